"""Shared torch-free argument schemas and counting helpers of the CIFAR families."""
from __future__ import annotations

from initscore.models.registry import Arg

NUM_CLASSES = Arg("int", 10, lo=1, hi=100_000, help="size of the classifier output")
BN = Arg(
    "bool",
    True,
    help="BatchNorm (true) or, when false, a learnable per-channel bias in place of every BN "
    "(the NIO paper's no-BN setting, Appendix B.2)",
)


def conv_params(c_in: int, c_out: int, k: int, bias: bool = False) -> int:
    """Weights (and bias) of a k x k Conv2d."""
    return c_in * c_out * k * k + (c_out if bias else 0)


def norm_params(channels: int, bn: bool) -> int:
    """BatchNorm2d has weight+bias (2C); its no-BN replacement is a bias (C)."""
    return 2 * channels if bn else channels


def linear_params(d_in: int, d_out: int) -> int:
    return d_in * d_out + d_out
