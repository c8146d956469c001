"""Torch network for the `lipschitz_mlp` family."""
from __future__ import annotations

import torch
from torch import nn

from initscore.lipschitz import LDLTLipschitzLinear, MaxMin

_ACT = {"relu": nn.ReLU, "maxmin": MaxMin}


class LipschitzMLP(nn.Module):
    """Flatten -> [LDLTLipschitzLinear -> activation] x (depth-1) -> LDLTLipschitzLinear.

    Per-layer bound lipschitz ** (1 / depth); the composition is lipschitz-Lipschitz.
    """

    def __init__(self, in_features: int, width: int, depth: int, num_classes: int, alpha: float = 1.0,
                 init_scale: float = 1.0, lipschitz: float = 1.0, activation: str = "relu", bias: bool = True,
                 init: str = "normal", learnable_alpha: bool = False) -> None:
        super().__init__()
        dims = [in_features] + [width] * (depth - 1) + [num_classes]
        per_layer = float(lipschitz) ** (1.0 / depth)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(LDLTLipschitzLinear(a, b, lipschitz=per_layer, alpha=alpha, init_scale=init_scale, bias=bias,
                                              init=init, learnable_alpha=learnable_alpha))
            if i < depth - 1:
                layers.append(_ACT[activation]())
        self.net = nn.Sequential(*layers)
        self.lipschitz = float(lipschitz)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
