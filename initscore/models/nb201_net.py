"""Torch network of the `nb201` family: the NAS-Bench-201 ``TinyNetwork`` skeleton.

Follows the official code structure (Dong & Yang 2020): ReLUConvBN operations
(ReLU, Conv without bias, BatchNorm affine), AvgPool3x3 stride 1 without
counting padding, `none` = multiply by zero, `skip_connect` = identity,
ResNet basic blocks of stride 2 between the stages. ReLUs are never in-place
so forward hooks (zero-cost proxies) see unmodified tensors.
"""
from __future__ import annotations

import torch
from torch import nn

from initscore.grad_samplers import register_samplewise
from initscore.models.nb201 import parse_cell


class ReLUConvBN(nn.Module):
    """ReLU-Conv-BN; `affine=False` gives the zero-cost-nas cell op: Conv WITH bias, BN without affine/running stats."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The `none` operation: an all-zero tensor of the input's shape (keeps the graph connected)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


register_samplewise(Zero)


def make_op(op: str, c: int, affine: bool = True) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, 0, affine)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, 1, affine)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 operation {op!r}")


class ResNetBasicblock(nn.Module):
    """Reduction block: two ReLUConvBN 3x3 (first with stride 2) plus AvgPool2x2 + Conv1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class InferCell(nn.Module):
    """A fixed cell: node j = sum over i < j of op_ij(node i); the output is node 3."""

    def __init__(self, cell: str, c: int, affine: bool = True) -> None:
        super().__init__()
        self.nodes = parse_cell(cell)
        self.edges = nn.ModuleList(make_op(op, c, affine) for node in self.nodes for op, _ in node)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        k = 0
        for node in self.nodes:
            acc = None
            for _, src in node:
                y = self.edges[k](states[src])
                k += 1
                acc = y if acc is None else acc + y
            states.append(acc)
        return states[-1]


class NB201Network(nn.Module):
    """variant "official": NAS-Bench-201 TinyNetwork. variant "zero_cost_nas": the NB201 model of zero-cost-nas
    (foresight/models/nasbench2.py, nasbench2_ops.py), on which the published proxy correlations were measured:
    cell ops are ReLU-Conv(bias)-BN(affine=False, track_running_stats=False); the rest is as official. Its
    synflow copy (get_prunable_copy(bn=False)) keeps the BatchNorms of the two reduction blocks, which the
    reference builds without use_bn; those BN modules carry `keep_in_synflow = True` here."""

    def __init__(self, cell: str, num_classes: int = 10, C: int = 16, N: int = 5, variant: str = "official") -> None:
        super().__init__()
        if variant not in ("official", "zero_cost_nas"):
            raise ValueError(f"unknown nb201 variant {variant!r}")
        affine = variant == "official"
        self.cell_str = cell
        self.variant = variant
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        blocks: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                block = ResNetBasicblock(c_prev, c, 2)
                if not affine:
                    for m in block.modules():
                        if isinstance(m, nn.BatchNorm2d):
                            m.keep_in_synflow = True
                blocks.append(block)
            blocks.extend(InferCell(cell, c, affine) for _ in range(N))
            c_prev = c
        self.cells = nn.Sequential(*blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the global average pool (used by the Zen-score)."""
        return self.lastact(self.cells(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.forward_features(x))
        return self.classifier(out.flatten(1))
