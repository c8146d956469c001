"""Torch network of the Wide ResNet family (Zagoruyko & Komodakis 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from initscore.models._layers import fixup_init_, kaiming_init_, norm2d


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


class FixupWideBlock(nn.Module):
    """The pre-activation block without normalization, in Fixup's form (Zhang, Dauphin & Ma, ICLR 2019, Sec. 3):
    a scalar bias before each ReLU and each convolution, a scalar multiplier at the end of the branch,

        pre = relu(x + bias1a) + bias1b
        out = x + scale * conv2(dropout(relu(conv1(pre) + bias2a)) + bias2b)

    with x replaced by the 1x1 shortcut conv of ``pre`` where the width or stride changes (the shortcut sees
    the same input as conv1, as in the Wide ResNet authors' code and in Fixup's downsampling blocks)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.dropout = dropout
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(x + self.bias1a) + self.bias1b
        out = F.relu(self.conv1(pre) + self.bias2a)
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out + self.bias2b) * self.scale
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-width; ``init="fixup"`` (bn=False only) builds :class:`FixupWideBlock` blocks, a scalar bias before
    the last ReLU and before the classifier, and Fixup's initialization (:func:`initscore.models._layers.fixup_init_`)."""

    def __init__(
        self, depth: int = 28, width: int = 10, dropout: float = 0.0, num_classes: int = 10, bn: bool = True,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        from initscore.models.wrn import check_fixup

        check_fixup(bn, init)
        self.fixup = init == "fixup"
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        c_in = 16
        for g, c_out in enumerate((16 * width, 32 * width, 64 * width)):
            blocks: list[nn.Module] = []
            for b in range(n):
                stride = 2 if (g > 0 and b == 0) else 1
                blocks.append(FixupWideBlock(c_in, c_out, stride, dropout) if self.fixup
                              else WideBlock(c_in, c_out, stride, dropout, bn))
                c_in = c_out
            setattr(self, f"block{g + 1}", nn.Sequential(*blocks))
        if self.fixup:
            self.bias1 = nn.Parameter(torch.zeros(1))
            self.bias2 = nn.Parameter(torch.zeros(1))
        else:
            self.bn = norm2d(c_in, bn)
        self.fc = nn.Linear(c_in, num_classes)
        if self.fixup:
            fixup_init_(self, FixupWideBlock, branches=3 * n)
        else:
            kaiming_init_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation the classifier sees."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        if self.fixup:
            return torch.flatten(F.adaptive_avg_pool2d(F.relu(x + self.bias1), 1), 1) + self.bias2
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
