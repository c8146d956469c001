"""A BatchNorm subclass that applies its own child modules after normalizing (timm's BatchNormAct2d pattern) keeps
them in the scoring copy, on every path (vmap, layer hooks, segments), against naive float64 loops."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore import fastpath
from initscore.scores import gradcosine

from engine_helpers import calibrated_eval_copy, flat_grad, naive_scores

F = nn.functional


class BNAct(nn.BatchNorm2d):
    """BatchNorm2d, then its `act` child (the layout of timm's norm-act layers)."""

    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


def _net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), BNAct(4), nn.Conv2d(4, 4, 3, stride=2, padding=1), BNAct(4),
                        nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BNAct):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def _data(B: int = 7):
    return torch.randn(B, 3, 6, 6, dtype=torch.float64), torch.randint(0, 5, (B,))


def _per_sample_bn(net: nn.Module) -> nn.Module:
    """A copy whose BNActs normalize each sample by its own statistics (instance norm with the BN's affine)."""
    import copy

    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, BNAct):
            m.forward = (lambda mod: lambda x: mod.act(F.instance_norm(x, weight=mod.weight, bias=mod.bias,
                                                                       eps=mod.eps)))(m)
    return ref


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("bn", ["calibrated", "per_sample"])
def test_sample_mode_keeps_the_activation(bn, plain):
    net = _net()
    x, y = _data()
    ref_net = calibrated_eval_copy(net, x) if bn == "calibrated" else _per_sample_bn(net)
    ref = naive_scores([flat_grad(ref_net, F.cross_entropy(ref_net(x[i:i + 1]), y[i:i + 1])) for i in range(len(x))])
    if plain:
        with fastpath.plain():
            s = gradcosine(net, (x, y), mode="sample", bn=bn)
    else:
        s = gradcosine(net, (x, y), mode="sample", bn=bn)
    assert s.gc == pytest.approx(ref["gc"], rel=1e-10) and s.gn == pytest.approx(ref["gn"], rel=1e-10)


@pytest.mark.parametrize("bn", ["batch", "calibrated"])
def test_batch_mode_keeps_the_activation(bn):
    from initscore.scores import batch_splits

    net = _net()
    x, y = _data(8)
    if bn == "batch":
        ref_net = __import__("copy").deepcopy(net).train()
    else:
        ref_net = calibrated_eval_copy(net, x)
    ref = naive_scores([flat_grad(ref_net, F.cross_entropy(ref_net(x[s:e]), y[s:e]))
                        for s, e in batch_splits(8, 3, 0.5)])
    s = gradcosine(net, (x, y), mode="batch", sub_batches=3, overlap=0.5, bn=bn)
    assert s.gc == pytest.approx(ref["gc"], rel=1e-10) and s.gn == pytest.approx(ref["gn"], rel=1e-10)
