"""Fixup initialization (Zhang, Dauphin & Ma, ICLR 2019) of the no-BN CIFAR ResNets."""
from __future__ import annotations

import math

import pytest
import torch

from initscore import models
from initscore.errors import SpecError
from initscore.models.resnet_cifar_net import FixupBasicBlock


def test_fixup_structure_and_initial_values():
    torch.manual_seed(0)
    net = models.create("resnet56", bn=False, init="fixup")
    blocks = [m for m in net.modules() if isinstance(m, FixupBasicBlock)]
    L = len(blocks)
    assert L == 27
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    for b in blocks:
        assert torch.count_nonzero(b.conv2.weight) == 0  # the last layer of every branch starts at 0
        assert float(b.scale) == 1.0 and all(float(t) == 0.0 for t in (b.bias1a, b.bias1b, b.bias2a, b.bias2b))
    assert torch.count_nonzero(net.fc.weight) == 0 and torch.count_nonzero(net.fc.bias) == 0
    # the first conv of each branch: He fan-out normal times L^(-1/(2m-2)) with m = 2
    w = torch.cat([b.conv1.weight.flatten() for b in blocks[L // 3 + 1: 2 * L // 3]])  # stage 2, 32 out channels
    want = math.sqrt(2.0 / (9 * 32)) * L ** -0.5
    assert float(w.std()) == pytest.approx(want, rel=0.02)
    stem = net.conv1.weight
    assert float(stem.std()) == pytest.approx(math.sqrt(2.0 / (9 * 16)), rel=0.1)


def test_fixup_tames_the_exploding_no_bn_resnet110():
    """Kaiming's no-BN ResNet-110 doubles the signal per block; Fixup's branches start at 0, so every block is the
    identity at init and the stem's activations pass through (the network's output is 0 until training moves fc)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    kaiming = models.create("resnet110", bn=False)
    fixup = models.create("resnet110", bn=False, init="fixup")
    feats = {}
    fixup.layer3.register_forward_hook(lambda m, i, o: feats.setdefault("fixup", o))
    kaiming.layer3.register_forward_hook(lambda m, i, o: feats.setdefault("kaiming", o))
    with torch.no_grad():
        assert float(fixup(x).abs().max()) == 0.0
        kaiming(x)
        stem = torch.relu(fixup.conv1(x))
    assert float(feats["kaiming"].std()) > 1e6 * float(feats["fixup"].std())
    assert float(feats["fixup"].std()) < 10 * float(stem.std())
    # it trains: a few SGD steps lower the loss on a fixed batch, gradients finite
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(fixup.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(fixup(x), y)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in fixup.parameters() if p.grad is not None)
        opt.step()
        losses.append(float(loss))
    assert losses[0] == pytest.approx(math.log(10), rel=1e-6) and losses[-1] < losses[0]


@pytest.mark.parametrize("args", [{"init": "fixup"}, {"bn": False, "init": "fixup", "shortcut": "B"},
                                  {"bn": False, "init": "lsuv"}])
def test_fixup_needs_no_bn_and_option_a(args):
    with pytest.raises(SpecError):
        models.get_entry("resnet20").num_params(args)
    with pytest.raises(SpecError):
        models.build({"arch": "resnet20", "args": args})
