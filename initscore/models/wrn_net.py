"""Torch network of the Wide ResNet family (Zagoruyko & Komodakis 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from initscore.models._layers import kaiming_init_, norm2d


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3, plus the shortcut.

    Where the width or stride changes, the shortcut is a 1x1 strided conv applied to the
    pre-activated input (as in the authors' code).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, bn: bool) -> None:
        super().__init__()
        self.bn1 = norm2d(c_in, bn)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = norm2d(c_out, bn)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(
        self, depth: int = 28, width: int = 10, dropout: float = 0.0, num_classes: int = 10, bn: bool = True
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        c_in = 16
        for g, c_out in enumerate((16 * width, 32 * width, 64 * width)):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(c_in, c_out, 2 if (g > 0 and b == 0) else 1, dropout, bn))
                c_in = c_out
            setattr(self, f"block{g + 1}", nn.Sequential(*blocks))
        self.bn = norm2d(c_in, bn)
        self.fc = nn.Linear(c_in, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
