"""Torch network of the DenseNet-BC family (Huang et al. 2017), CIFAR variant."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from initscore.models._layers import kaiming_init_, norm2d
from initscore.models.densenet import block_layers


class Bottleneck(nn.Module):
    """BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); output concatenated to the input."""

    def __init__(self, c_in: int, k: int, bn: bool) -> None:
        super().__init__()
        self.bn1 = norm2d(c_in, bn)
        self.conv1 = nn.Conv2d(c_in, 4 * k, 1, bias=False)
        self.bn2 = norm2d(4 * k, bn)
        self.conv2 = nn.Conv2d(4 * k, k, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1(c_out)-avgpool2."""

    def __init__(self, c_in: int, c_out: int, bn: bool) -> None:
        super().__init__()
        self.bn = norm2d(c_in, bn)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    def __init__(
        self, depth: int = 100, growth_rate: int = 12, compression: float = 0.5, num_classes: int = 10, bn: bool = True
    ) -> None:
        super().__init__()
        n, k = block_layers(depth), growth_rate
        c = 2 * k
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        for stage in range(3):
            layers = []
            for _ in range(n):
                layers.append(Bottleneck(c, k, bn))
                c += k
            setattr(self, f"block{stage + 1}", nn.Sequential(*layers))
            if stage < 2:
                c_out = int(math.floor(c * compression))
                setattr(self, f"trans{stage + 1}", Transition(c, c_out, bn))
                c = c_out
        self.bn = norm2d(c, bn)
        self.fc = nn.Linear(c, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.trans1(self.block1(x))
        x = self.trans2(self.block2(x))
        x = F.relu(self.bn(self.block3(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
