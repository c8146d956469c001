"""Wide ResNets (Zagoruyko & Komodakis 2016), torch-free declaration; network in wrn_net.py.

WRN-d-w: a 3x3 conv to 16 channels, three groups of n = (d - 4) / 6 pre-activation
blocks (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3) of widths 16w/32w/64w (stride 2 at
the start of groups 2 and 3; a 1x1 conv shortcut where the width or stride changes),
then BN-ReLU, global average pooling and a linear classifier.
WRN-28-10 has 36,479,194 parameters with 10 classes (the paper's "36.5M").
With bn=False every BN is replaced by a learnable per-channel bias (NIO App. B.2).
``init="fixup"`` (bn=False only; Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without
Normalization", ICLR 2019, Sec. 3): no per-channel biases; a scalar bias before each ReLU and each convolution
of a block, before the last ReLU and before the classifier, a scalar multiplier at the end of each residual
branch (init 1); every branch's last convolution and the classifier start at 0, every branch's first
convolution is He-initialized times L^(-1/(2m-2)) = L^(-1/2) (L = 3n branches, m = 2); the stem and the 1x1
shortcut convolutions keep their He initialization. Extra parameters: 2 + 5 per block.
"""
from __future__ import annotations

from initscore.errors import SpecError
from initscore.models._common import BN, NUM_CLASSES, conv_params, linear_params, norm_params
from initscore.models.registry import Arg, register_model


def _depth_check(depth: int) -> str | None:
    return None if (depth - 4) % 6 == 0 else "WRN depth must be 6n + 4 (e.g. 16, 28, 40)"


def check_fixup(bn: bool, init: str) -> None:
    if init == "fixup" and bn:
        raise SpecError("init 'fixup' is for networks without normalization: use bn=false")


def count_wrn(depth: int = 28, width: int = 10, dropout: float = 0.0, num_classes: int = 10, bn: bool = True,
              init: str = "kaiming") -> int:
    """Exact parameter count of WRN-depth-width (no torch; dropout has no parameters)."""
    check_fixup(bn, init)
    fixup = init == "fixup"
    n = (depth - 4) // 6
    widths = (16 * width, 32 * width, 64 * width)
    total = conv_params(3, 16, 3)
    c_in = 16
    for c_out in widths:
        for _ in range(n):
            total += conv_params(c_in, c_out, 3) + conv_params(c_out, c_out, 3)
            total += 5 if fixup else norm_params(c_in, bn) + norm_params(c_out, bn)
            if c_in != c_out:
                total += conv_params(c_in, c_out, 1)
            c_in = c_out
    return total + (2 if fixup else norm_params(c_in, bn)) + linear_params(c_in, num_classes)


_DROPOUT = Arg("float", 0.0, lo=0.0, hi=0.99, help="dropout between the two convs of a block")
_INIT = Arg("str", "kaiming", choices=("kaiming", "fixup"),
            help="kaiming (He et al. 2015) or fixup (Zhang et al. 2019: no norm layers, zero-initialized last layer "
                 "per residual branch, L^-1/2 rescaling, scalar biases and multipliers; bn=false)")
_BASE = {"num_classes": NUM_CLASSES, "bn": BN, "dropout": _DROPOUT, "init": _INIT}
_GENERAL = {
    "depth": Arg("int", 28, lo=10, hi=1000, check=_depth_check, help="6n + 4"),
    "width": Arg("int", 10, lo=1, hi=64, help="widening factor k"),
    **_BASE,
}


@register_model(
    "wrn28_10",
    family="wrn",
    args=_BASE,
    count_params=lambda num_classes, bn, dropout, init: count_wrn(28, 10, dropout, num_classes, bn, init),
    input_shape=(3, 32, 32),
)
def wrn28_10(**kwargs):
    """Wide ResNet WRN-28-10 for CIFAR (Zagoruyko & Komodakis 2016)."""
    from initscore.models.wrn_net import WideResNet

    return WideResNet(depth=28, width=10, **kwargs)


@register_model("wrn", family="wrn", args=_GENERAL, count_params=count_wrn, input_shape=(3, 32, 32))
def wrn(**kwargs):
    """Wide ResNet WRN-depth-width for CIFAR (Zagoruyko & Komodakis 2016)."""
    from initscore.models.wrn_net import WideResNet

    return WideResNet(**kwargs)
