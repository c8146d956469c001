"""DenseNet-BC for CIFAR (Huang et al. 2017), torch-free declaration; network in densenet_net.py.

DenseNet-BC of depth L and growth rate k: a 3x3 conv to 2k channels, three dense
blocks of n = (L - 4) / 6 bottleneck layers (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3
to k, concatenated), transitions BN-ReLU-conv1x1 to floor(theta * C) channels and
2x2 average pooling (compression theta = 0.5), then BN-ReLU, global pooling, linear.
DenseNet-100 (k = 12) has 769,162 parameters with 10 classes (the paper's "0.8M").
With bn=False every BN is replaced by a learnable per-channel bias (NIO App. B.2).
"""
from __future__ import annotations

import math

from initscore.models._common import BN, NUM_CLASSES, conv_params, linear_params, norm_params
from initscore.models.registry import Arg, register_model


def _depth_check(depth: int) -> str | None:
    return None if (depth - 4) % 6 == 0 else "DenseNet-BC depth must be 6n + 4 (e.g. 40, 100, 190)"


def block_layers(depth: int) -> int:
    """Bottleneck layers per dense block: (depth - 4) / 6 (each layer holds two convs)."""
    return (depth - 4) // 6


def count_densenet(
    depth: int = 100, growth_rate: int = 12, compression: float = 0.5, num_classes: int = 10, bn: bool = True
) -> int:
    """Exact parameter count of DenseNet-BC (no torch)."""
    n, k = block_layers(depth), growth_rate
    c = 2 * k
    total = conv_params(3, c, 3)
    for stage in range(3):
        for _ in range(n):
            total += norm_params(c, bn) + conv_params(c, 4 * k, 1) + norm_params(4 * k, bn) + conv_params(4 * k, k, 3)
            c += k
        if stage < 2:
            c_out = int(math.floor(c * compression))
            total += norm_params(c, bn) + conv_params(c, c_out, 1)
            c = c_out
    return total + norm_params(c, bn) + linear_params(c, num_classes)


_BASE = {"num_classes": NUM_CLASSES, "bn": BN}
_GENERAL = {
    "depth": Arg("int", 100, lo=10, hi=1000, check=_depth_check, help="6n + 4"),
    "growth_rate": Arg("int", 12, lo=1, hi=256),
    "compression": Arg("float", 0.5, lo=0.05, hi=1.0, help="transition channel ratio theta"),
    **_BASE,
}


@register_model(
    "densenet100",
    family="densenet",
    args=_BASE,
    count_params=lambda num_classes, bn: count_densenet(100, 12, 0.5, num_classes, bn),
    input_shape=(3, 32, 32),
)
def densenet100(**kwargs):
    """DenseNet-BC-100 (k = 12, compression 0.5) for CIFAR (Huang et al. 2017)."""
    from initscore.models.densenet_net import DenseNetBC

    return DenseNetBC(depth=100, growth_rate=12, compression=0.5, **kwargs)


@register_model("densenet", family="densenet", args=_GENERAL, count_params=count_densenet, input_shape=(3, 32, 32))
def densenet(**kwargs):
    """DenseNet-BC of any depth 6n + 4, growth rate and compression, for CIFAR."""
    from initscore.models.densenet_net import DenseNetBC

    return DenseNetBC(**kwargs)
