"""CIFAR ResNets of He et al. 2016 (Sec. 4.2), torch-free declaration; network in resnet_cifar_net.py.

Architecture (depth = 6n + 2): a 3x3 conv to 16 channels, three stages of n basic
blocks (two 3x3 convs each) with widths 16/32/64 (the first block of stages 2 and 3
has stride 2), global average pooling and a linear classifier.

Shortcuts (`shortcut` argument):
  "A"    (default, the paper's CIFAR option A): parameter-free identity; where the
         shape changes, the input is subsampled with stride 2 and zero-padded in channels.
  "A-bn" the GradInit/NIO code's variant: stride-2 subsampling, a BatchNorm on the
         subsampled input, then zero-padding (adds 2*C_in params per stage change).
  "B"    projection shortcut (1x1 strided conv + BN) where the shape changes;
         this is the 272,474-parameter ResNet-20 quoted in many repositories.
Initialization (`init` argument): "kaiming" (default; He et al. 2015 fan-out normal, see
`_layers.kaiming_init_`) or "fixup" (Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning
Without Normalization", ICLR 2019, Sec. 3; needs bn=False and shortcut "A"): no normalization and no
per-channel biases; instead a scalar bias before each convolution, before each ReLU and before the
classifier, and a scalar multiplier at the end of each residual branch (init 1). The last convolution of
every branch and the classifier (weight and bias) start at 0; the other convolutions inside the branches
are He-initialized and multiplied by L^(-1/(2m-2)) = L^(-1/2) (L = 3n residual branches, m = 2 layers per
branch). Extra parameters: 2 + 5 per block.
Parameter counts for num_classes=10, bn=True (equal to the torch count, tests/models):
ResNet-20 A: 269,722 (B: 272,474); ResNet-56 A: 853,018; ResNet-110 A: 1,727,962.
With bn=False every BN (2C parameters) becomes a per-channel bias (C parameters),
which is the same function as the GradInit/NIO code's conv-with-bias no-BN networks.
"""
from __future__ import annotations

from initscore.errors import SpecError
from initscore.models._common import BN, NUM_CLASSES, conv_params, linear_params, norm_params
from initscore.models.registry import Arg, register_model

WIDTHS = (16, 32, 64)
DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}

_ARGS = {
    "num_classes": NUM_CLASSES,
    "bn": BN,
    "shortcut": Arg(
        "str",
        "A",
        choices=("A", "A-bn", "B"),
        help="A: zero-padded strided identity (He et al.); A-bn: GradInit/NIO code's BN on it; B: 1x1 conv+BN projection",
    ),
    "init": Arg("str", "kaiming", choices=("kaiming", "fixup"),
                help="kaiming (He et al. 2015) or fixup (Zhang et al. 2019: no norm layers, zero-initialized last "
                     "layer per residual branch, L^-1/2 rescaling, scalar biases and multipliers; bn=false, shortcut A)"),
}


def check_fixup(bn: bool, shortcut: str, init: str) -> None:
    if init == "fixup" and (bn or shortcut != "A"):
        raise SpecError("init 'fixup' is for networks without normalization: use bn=false and shortcut 'A' "
                        f"(got bn={bn}, shortcut={shortcut!r})")


def count_resnet_cifar(n: int, num_classes: int = 10, bn: bool = True, shortcut: str = "A", init: str = "kaiming") -> int:
    """Exact parameter count of a CIFAR ResNet with n blocks per stage (no torch)."""
    check_fixup(bn, shortcut, init)
    if init == "fixup":
        convs = conv_params(3, WIDTHS[0], 3)
        c_in = WIDTHS[0]
        for width in WIDTHS:
            for _ in range(n):
                convs += conv_params(c_in, width, 3) + conv_params(width, width, 3) + 5
                c_in = width
        return convs + 2 + linear_params(WIDTHS[-1], num_classes)
    total = conv_params(3, WIDTHS[0], 3, bias=False) + norm_params(WIDTHS[0], bn)
    c_in = WIDTHS[0]
    for width in WIDTHS:
        for b in range(n):
            total += conv_params(c_in, width, 3) + norm_params(width, bn)
            total += conv_params(width, width, 3) + norm_params(width, bn)
            if c_in != width:
                if shortcut == "B":
                    total += conv_params(c_in, width, 1) + norm_params(width, bn)
                elif shortcut == "A-bn":
                    total += norm_params(c_in, bn)
            c_in = width
    return total + linear_params(WIDTHS[-1], num_classes)


def _register(name: str, n: int) -> None:
    depth = 6 * n + 2

    def count(num_classes: int, bn: bool, shortcut: str, init: str) -> int:
        return count_resnet_cifar(n, num_classes, bn, shortcut, init)

    def build(**kwargs):
        from initscore.models.resnet_cifar_net import CifarResNet

        return CifarResNet(n=n, **kwargs)

    build.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016, {n} basic blocks per stage, widths 16/32/64)."
    register_model(name, family="resnet_cifar", args=_ARGS, count_params=count, input_shape=(3, 32, 32))(build)


for _name, _n in DEPTHS.items():
    _register(_name, _n)
