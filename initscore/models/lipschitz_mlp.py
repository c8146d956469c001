"""L-Lipschitz MLP of LDLT layers (torch-free declaration; network in lipschitz_mlp_net.py).

Each of the `depth` layers is an LDLTLipschitzLinear with bound lipschitz^(1/depth)
(see initscore.lipschitz), separated by 1-Lipschitz activations, so the whole network
is `lipschitz`-Lipschitz in the l2 norm.
"""
from __future__ import annotations

from initscore.models.registry import Arg, register_model

_ARGS = {
    "in_features": Arg("int", 3 * 32 * 32, lo=1, hi=1_000_000, help="flattened input size"),
    "width": Arg("int", 128, lo=1, hi=16_384, help="width of each hidden layer"),
    "depth": Arg("int", 4, lo=1, hi=256, help="number of Lipschitz linear layers (>= 1)"),
    "num_classes": Arg("int", 10, lo=1, hi=100_000),
    "alpha": Arg("float", 1.0, lo=1e-8, hi=1e8, help="alpha in M = L W0 (alpha I + W0^T W0)^(-1/2)"),
    "init_scale": Arg("float", 1.0, lo=1e-8, hi=1e8, help="W0 ~ N(0, (init_scale/sqrt(fan_in))^2); 1 = He"),
    "lipschitz": Arg("float", 1.0, lo=1e-8, hi=1e8, help="Lipschitz bound of the whole network"),
    "activation": Arg("str", "relu", choices=("relu", "maxmin"), help="1-Lipschitz activation"),
    "bias": Arg("bool", True),
    "init": Arg("str", "normal", choices=("normal", "pytorch"),
                help="normal: W0 ~ N(0, init_scale^2/fan_in), bias 0; pytorch: nn.Linear's default U(+-init_scale/"
                     "sqrt(fan_in)) (variance init_scale^2/(3 fan_in)), bias U(+-1/sqrt(fan_in)) (the authors' code)"),
    "learnable_alpha": Arg("bool", False, help="alpha = exp(theta), theta trainable, starting at log(alpha)"),
}


def _count(in_features: int, width: int, depth: int, num_classes: int, alpha: float, init_scale: float,
           lipschitz: float, activation: str, bias: bool, init: str = "normal", learnable_alpha: bool = False) -> int:
    dims = [in_features] + [width] * (depth - 1) + [num_classes]
    return sum(a * b + (b if bias else 0) + (1 if learnable_alpha else 0) for a, b in zip(dims[:-1], dims[1:]))


@register_model("lipschitz_mlp", family="lipschitz_mlp", args=_ARGS, count_params=_count, input_shape=(3, 32, 32))
def lipschitz_mlp(**kwargs):
    """L-Lipschitz MLP of LDLT/Cholesky-parameterized layers (Juston et al. 2026)."""
    from initscore.models.lipschitz_mlp_net import LipschitzMLP

    return LipschitzMLP(**kwargs)
