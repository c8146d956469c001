"""Torch network of the CIFAR ResNet family (He et al. 2016, Sec. 4.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from initscore.grad_samplers import register_samplewise
from initscore.models._layers import fixup_init_, kaiming_init_, norm2d
from initscore.models.resnet_cifar import WIDTHS


class PadShortcut(nn.Module):
    """Option A: x[:, :, ::s, ::s] zero-padded from c_in to c_out channels (no parameters).

    With `bn` (the "A-bn" variant) a norm layer acts on the subsampled input first.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.norm is not None:
            x = self.norm(x)
        return F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in))


register_samplewise(PadShortcut)  # its norm child, if any, is checked on its own


class BasicBlock(nn.Module):
    """conv3x3-norm-ReLU-conv3x3-norm, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = norm2d(c_out, bn)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = norm2d(c_out, bn)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "B":
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm2d(c_out, bn))
        else:
            self.shortcut = PadShortcut(c_in, c_out, stride, norm2d(c_in, bn) if shortcut == "A-bn" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FixupBasicBlock(nn.Module):
    """Fixup residual block (Zhang et al. 2019, Fig. 1 right): scalar biases a1, b1, a2, b2 and multiplier s,
    out = relu(s * conv2(relu(conv1(x + a1) + b1) + a2) + b2 + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.shortcut: nn.Module = nn.Identity() if (stride == 1 and c_in == c_out) else PadShortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x + self.bias1a) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; `bn=False` puts a per-channel bias in place of each BN;
    `init="fixup"` (bn=False, shortcut "A") builds Fixup blocks and Fixup's initialization instead."""

    def __init__(self, n: int, num_classes: int = 10, bn: bool = True, shortcut: str = "A",
                 init: str = "kaiming") -> None:
        super().__init__()
        from initscore.models.resnet_cifar import check_fixup

        check_fixup(bn, shortcut, init)
        self.fixup = init == "fixup"
        if self.fixup:
            self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
            self.bias1 = nn.Parameter(torch.zeros(1))
            c_in, stages = WIDTHS[0], []
            for i, width in enumerate(WIDTHS):
                blocks = []
                for b in range(n):
                    blocks.append(FixupBasicBlock(c_in, width, 2 if (i > 0 and b == 0) else 1))
                    c_in = width
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.bias2 = nn.Parameter(torch.zeros(1))
            self.fc = nn.Linear(WIDTHS[-1], num_classes)
            fixup_init_(self, FixupBasicBlock, branches=3 * n)
            return
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = norm2d(WIDTHS[0], bn)
        stages = []
        c_in = WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            blocks = []
            for b in range(n):
                stride = 2 if (i > 0 and b == 0) else 1
                blocks.append(BasicBlock(c_in, width, stride, bn, shortcut))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(WIDTHS[-1], num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixup:
            x = F.relu(self.conv1(x) + self.bias1)
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1) + self.bias2)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)
