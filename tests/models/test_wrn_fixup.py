"""Fixup initialization (Zhang, Dauphin & Ma, ICLR 2019) of the no-BN Wide ResNets."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from initscore import models
from initscore.errors import SpecError
from initscore.models.wrn_net import FixupWideBlock

SMALL = {"arch": "wrn", "args": {"depth": 16, "width": 4, "bn": False, "init": "fixup"}}


def _blocks(net):
    return [m for m in net.modules() if isinstance(m, FixupWideBlock)]


def test_fixup_wrn_initial_values_follow_the_formula():
    torch.manual_seed(0)
    net = models.build(SMALL)
    blocks = _blocks(net)
    L = len(blocks)
    assert L == 3 * (16 - 4) // 6 == 6
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    for b in blocks:
        assert torch.count_nonzero(b.conv2.weight) == 0  # the last layer of every branch starts at 0
        assert b.scale.item() == 1.0 and all(t.item() == 0.0 for t in (b.bias1a, b.bias1b, b.bias2a, b.bias2b))
    assert torch.count_nonzero(net.fc.weight) == 0 and torch.count_nonzero(net.fc.bias) == 0
    assert net.bias1.item() == 0.0 and net.bias2.item() == 0.0
    # a branch's first conv: He fan-out normal N(0, 2 / (9 c_out)) times L^(-1/(2m-2)), m = 2
    last = [b for b in blocks if b.conv1.out_channels == 256]
    w = torch.cat([b.conv1.weight.flatten() for b in last])
    assert float(w.std()) == pytest.approx(math.sqrt(2.0 / (9 * 256)) * L ** -0.5, rel=0.02)
    # the 1x1 shortcut convs keep their He fan-out initialization, unscaled: N(0, 2 / c_out)
    for b in blocks:
        if b.shortcut is not None:
            c_out = b.shortcut.out_channels
            assert float(b.shortcut.weight.std()) == pytest.approx(math.sqrt(2.0 / c_out), rel=0.1)
    assert float(net.conv1.weight.std()) == pytest.approx(math.sqrt(2.0 / (9 * 16)), rel=0.15)


def test_fixup_wrn_output_at_init_is_the_shortcut_path():
    """Every branch contributes exactly 0: each block returns its shortcut, the pooled features equal a forward
    through the stem and the shortcuts alone, and the zero classifier outputs 0."""
    torch.manual_seed(1)
    net = models.build(SMALL).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        h = net.conv1(x)
        for b in _blocks(net):
            pre = F.relu(h + b.bias1a) + b.bias1b
            want = h if b.shortcut is None else b.shortcut(pre)
            assert torch.equal(b(h), want)
            h = want
        shortcut_only = torch.flatten(F.adaptive_avg_pool2d(F.relu(h), 1), 1)
        assert torch.equal(net.features(x), shortcut_only)
        assert float(shortcut_only.abs().max()) > 0.0
        assert torch.equal(net(x), torch.zeros(4, 10))


def test_fixup_wrn_trains_without_nan():
    """SGD from Fixup's initialization: the first step can move only the classifier (every other gradient passes
    through its zero weight), the second reaches the branches; losses and gradients stay finite and fall."""
    torch.manual_seed(2)
    net = models.build({**SMALL, "args": {**SMALL["args"], "dropout": 0.3}}).train()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(4):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        if step == 0:
            moved = {n for n, p in net.named_parameters() if torch.count_nonzero(p.grad) > 0}
            assert moved == {"fc.weight", "fc.bias"}
        opt.step()
        assert all(torch.isfinite(p).all() for p in net.parameters())
        losses.append(float(loss))
    assert losses[0] == pytest.approx(math.log(10), rel=1e-6) and losses[-1] < losses[0]
    assert all(torch.count_nonzero(b.conv2.weight) > 0 for b in _blocks(net))


def test_fixup_wrn28_10_parameter_count_and_spec_errors():
    entry = models.get_entry("wrn28_10")
    with torch.device("meta"):
        net = models.create("wrn28_10", bn=False, init="fixup")
    assert entry.num_params({"bn": False, "init": "fixup"}) == sum(p.numel() for p in net.parameters())
    assert len(_blocks(net)) == 12
    for args in ({"init": "fixup"}, {"bn": True, "init": "fixup"}, {"bn": False, "init": "lsuv"}):
        with pytest.raises(SpecError):
            entry.num_params(args)
        with pytest.raises(SpecError):
            models.build({"arch": "wrn28_10", "args": args})
    assert entry.num_params({}) == 36_479_194  # the Kaiming network is unchanged
