"""RescaleAdam (initscore.rescale_adam): the NIO/GradInit reference optimizer of the per-tensor scales.

Checked against torch's Adam where they must agree (one branch, no clipping), against the
reference's update written out by hand where they must differ (branch switch, clipping), and
through rectify (same trajectory as Adam when every step is an ascent step and nothing is clipped).
"""
from __future__ import annotations

import math

import pytest
import torch

from initscore.errors import OptionsError
from initscore.nio import rectify
from initscore.rescale_adam import RescaleAdam
from initscore.scores import gradcosine

from engine_helpers import tiny_mlp


def _leaves(n: int = 3) -> list[torch.Tensor]:
    return [torch.ones((), dtype=torch.float64, requires_grad=True) for _ in range(n)]


def _set(leaves, grads) -> None:
    for s, g in zip(leaves, grads):
        s.grad = torch.tensor(float(g), dtype=torch.float64)


def test_one_branch_without_clipping_is_torch_adam():
    gen = torch.Generator().manual_seed(0)
    seq = torch.randn(12, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.01, 1.0, 50.0], dtype=torch.float64)
    for constrained in (False, True):
        a, b = _leaves(), _leaves()
        ours, ref = RescaleAdam(a, lr=0.05, grad_clip=0.0), torch.optim.Adam(b, lr=0.05)
        for g in seq:
            _set(a, g)
            _set(b, g)
            ours.step(constrained)
            ref.step()
        assert [float(s.detach()) for s in a] == pytest.approx([float(s.detach()) for s in b], rel=1e-12, abs=1e-14)


def test_reference_update_by_hand_clipping_and_per_branch_first_moments():
    """Two ascent steps, one constraint step with a huge gradient, one ascent step, written out as the
    reference's RescaleAdam.step does it (first moment per branch, shared second moment, bias correction 2
    over all steps, clip to +-1)."""
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    steps = [(False, -0.1), (False, -0.1), (True, 264.0), (False, -0.1)]  # minimize: -0.1 = "go up"
    s = torch.ones((), dtype=torch.float64, requires_grad=True)
    opt = RescaleAdam([s], lr=lr, grad_clip=1.0)
    m, v, k, want = {True: 0.0, False: 0.0}, 0.0, {True: 0, False: 0}, 1.0
    for constrained, g in steps:
        before = float(s.detach())
        s.grad = torch.tensor(g, dtype=torch.float64)
        opt.step(constrained)
        gc = max(min(g, 1.0), -1.0)
        k[constrained] += 1
        m[constrained] = b1 * m[constrained] + (1 - b1) * gc
        v = b2 * v + (1 - b2) * gc * gc
        want -= lr / (1 - b1 ** k[constrained]) * m[constrained] / (math.sqrt(v / (1 - b2 ** (k[True] + k[False]))) + eps)
        assert float(s.detach()) == pytest.approx(want, rel=1e-12)
    # the ascent step after the constraint step still goes UP (its own first moment), unlike one shared Adam
    t = torch.ones((), dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([t], lr=lr)
    assert float(s.detach()) > before  # the last (ascent) step of RescaleAdam went up
    for _, g in steps:
        before = float(t.detach())
        t.grad = torch.tensor(g, dtype=torch.float64)
        adam.step()
    assert float(t.detach()) < before  # shared Adam: the constraint gradient's momentum still pushes down


def test_clipping_bounds_the_gradient_the_moments_see():
    a, b = _leaves(1), _leaves(1)
    big, clipped = RescaleAdam(a, lr=0.1, grad_clip=1.0), RescaleAdam(b, lr=0.1, grad_clip=0.0)
    for g in (264.0, 0.5, -3.0):
        _set(a, [g])
        _set(b, [max(min(g, 1.0), -1.0)])
        big.step(True)
        clipped.step(True)
    assert float(a[0].detach()) == pytest.approx(float(b[0].detach()), rel=1e-12)


def _problem():
    torch.manual_seed(0)
    net = tiny_mlp(act=torch.nn.Tanh)
    xs = [torch.randn(16, 6) for _ in range(3)]
    return net, [(x, torch.randint(0, 3, (16,))) for x in xs]


def test_rectify_with_rescale_adam():
    net, train = _problem()
    # every step an ascent step (no bound) and nothing clipped: the same trajectory as one torch Adam
    kw = dict(iters=6, lr=0.05, gamma=1e12, mode="sample")
    r_adam = rectify(net, train, optimizer="adam", **kw)
    r_ra = rectify(net, train, optimizer="rescale_adam", grad_clip=0.0, **kw)
    assert [h["gc"] for h in r_ra.history] == pytest.approx([h["gc"] for h in r_adam.history], rel=1e-6)
    assert r_ra.scales == pytest.approx(r_adam.scales, rel=1e-6)
    # with a bound that bites, the branches are taken as NIO's rule says and the scales stay >= min_scale
    g0 = gradcosine(net, train[0], mode="sample").g_max
    r = rectify(net, train, optimizer="rescale_adam", iters=12, lr=0.1, gamma=0.7 * g0, mode="sample",
                min_scale=0.05)
    assert r.history[0]["constrained"]
    assert all(h["constrained"] == (h["g_max"] > 0.7 * g0) for h in r.history)
    assert any(not h["constrained"] for h in r.history)  # it gets back under the bound
    assert all(v >= 0.05 - 1e-7 for v in r.scales.values())
    for method in ("gradinit", "metainit"):  # the baselines go through the same loop
        assert len(rectify(net, train, method=method, optimizer="rescale_adam", iters=2).history) == 2


@pytest.mark.parametrize("grad_clip", [-1.0, float("nan"), float("inf"), "1"])
def test_bad_grad_clip(grad_clip):
    net, train = _problem()
    with pytest.raises(OptionsError, match="grad_clip"):
        rectify(net, train, optimizer="rescale_adam", grad_clip=grad_clip, iters=1)
