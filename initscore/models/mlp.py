"""Small multilayer perceptron family (torch-free declaration; network in mlp_net.py)."""
from __future__ import annotations

from initscore.models.registry import Arg, register_model

_ARGS = {
    "in_features": Arg("int", 3 * 32 * 32, lo=1, hi=1_000_000, help="flattened input size"),
    "hidden": Arg("int", 256, lo=1, hi=65_536, help="width of each hidden layer"),
    "depth": Arg("int", 3, lo=1, hi=256, help="number of Linear layers (>= 1)"),
    "num_classes": Arg("int", 10, lo=1, hi=100_000),
    "activation": Arg("str", "relu", choices=("relu", "gelu", "tanh")),
    "bias": Arg("bool", True),
}


def _count(in_features: int, hidden: int, depth: int, num_classes: int, activation: str, bias: bool) -> int:
    dims = [in_features] + [hidden] * (depth - 1) + [num_classes]
    return sum(a * b + (b if bias else 0) for a, b in zip(dims[:-1], dims[1:]))


@register_model("mlp", family="mlp", args=_ARGS, count_params=_count, input_shape=(3, 32, 32))
def mlp(**kwargs):
    """Multilayer perceptron on flattened inputs, PyTorch default (Kaiming-uniform) init."""
    from initscore.models.mlp_net import MLP

    return MLP(**kwargs)
