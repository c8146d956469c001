"""The gradient plan (initscore.grad_plan) and the switch (initscore.fastpath): every fast path off gives the plain
reference path, and both give the same numbers (float64) over registry models x score modes x BatchNorm modes, for
GC, GN and one NIO step."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from initscore import bn as bnmod
from initscore import fast_conv, fastpath, grad_plan, models
from initscore.hook_grads import hook_grad_fn
from initscore.nio import rectify, rectify_prepared
from initscore.scores import gradcosine, trainable

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"


def _bn_act_net() -> nn.Module:
    """A small network with timm's BatchNormAct2d (a BatchNorm2d subclass that applies its own activation)."""
    from timm.layers import BatchNormAct2d

    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), BatchNormAct2d(4, act_layer=nn.ReLU),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), BatchNormAct2d(4, act_layer=nn.SiLU),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


MODELS = {
    "resnet20": lambda: models.create("resnet20"),
    "resnet20-nobn": lambda: models.create("resnet20", bn=False),
    "nb201": lambda: models.create("nb201", cell=CELL, C=4, N=1),
    "densenet": lambda: models.create("densenet", depth=10),
    "wrn": lambda: models.create("wrn", depth=10, width=1),
    "mlp": lambda: models.create("mlp", hidden=16),
    "bn-act": _bn_act_net,
}
# (score mode, BN mode): per-sample exact and sub-batch relaxation, with every BN mode each supports
MODES = [("sample", "calibrated"), ("sample", "per_sample"), ("sample", "batch"),
         ("batch", "batch"), ("batch", "calibrated"), ("batch", "per_sample"), ("batch", "shared")]
# a BN mode that does not apply to a network: per-sample statistics need spatial dimensions (the MLP has none)
SKIP = {("mlp", "per_sample")}


def _batch(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def _model(name):
    if name == "bn-act":
        pytest.importorskip("timm")
    torch.manual_seed(1)
    return MODELS[name]().double()


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return a == pytest.approx(b, rel=rel, abs=1e-12)


@pytest.mark.parametrize("mode,bn", MODES, ids=[f"{m}-{b}" for m, b in MODES])
@pytest.mark.parametrize("name", list(MODELS))
def test_fast_equals_plain(name, mode, bn):
    """GC, GN (and per tensor) of gradcosine, and one NIO step, on the fast routes and on the plain path."""
    if (name, bn) in SKIP:
        pytest.skip("per-sample BN statistics need spatial dimensions")
    model = _model(name)
    if not bnmod.has_batchnorm(model) and bn not in ("calibrated" if mode == "sample" else "batch"):
        pytest.skip("no BatchNorm: the BN mode changes nothing")
    batch = _batch()
    kw = {"sub_batches": 2, "overlap": 0.5} if mode == "batch" else {}
    fast = gradcosine(model, batch, mode=mode, bn=bn, **kw)
    with fastpath.plain():
        plain = gradcosine(model, batch, mode=mode, bn=bn, **kw)
    for attr in ("gc", "gn", "g_max", "g_min"):
        assert _close(getattr(fast, attr), getattr(plain, attr)), attr
    # per tensor; a tensor whose true gradient is 0 (a BN bias feeding a per-sample BN) holds rounding noise
    # (norm ~1e-17) whose cosine means nothing on either path
    top = max(l.gn for l in plain.layers)
    for lf, lp in zip(fast.layers, plain.layers):
        assert lf.name == lp.name and lf.gn == pytest.approx(lp.gn, rel=1e-8, abs=1e-12 * top), lf.name
        if lp.gn > 1e-9 * top:
            assert lf.gc == pytest.approx(lp.gc, rel=1e-8, abs=1e-10), lf.name
    if mode == "sample" and bn == "batch" and name not in ("nb201", "bn-act"):
        return  # coupled per-sample gradients through NIO's second order: slow; covered on the two small BN networks
    # one NIO step: the measured record and the scales after the step
    data = [_batch(8, seed=3)]
    nio_kw = dict(iters=1, lr=0.05, mode=mode, bn=bn, sub_batches=2, overlap=0.5, seed=0)
    f = rectify(model, data, **nio_kw)
    with fastpath.plain():
        p = rectify(model, data, **nio_kw)
    for k, v in f.scales.items():
        assert v == pytest.approx(p.scales[k], rel=1e-8, abs=1e-10), k
    for hf, hp in zip(f.history, p.history):
        assert _close(hf["gc"], hp["gc"], 1e-8) and _close(hf["gn"], hp["gn"], 1e-8), (hf, hp)


def test_the_switch_turns_every_route_of_the_plan_off():
    model = _model("resnet20")
    for mode in ("sample", "batch"):
        for bn in ("batch", "calibrated", "per_sample", "shared"):
            for order in (1, 2, 3):
                with fastpath.plain():
                    plan = grad_plan.decide(model, mode=mode, bn_mode=bn, default_loss=True, order=order)
                assert not (plan.segments or plan.fast_conv or plan.bn_first_order or plan.instance_kernel
                            or plan.channels_last), plan
                assert plan.per_sample in ({"none"} if mode == "batch" else {"vmap", "coupled"})
                # the switch changes which routes run, never what is computed
                fast = grad_plan.decide(model, mode=mode, bn_mode=bn, default_loss=True, order=order)
                assert (fast.bn_mode, fast.primitive_bn, fast.shared) == (plan.bn_mode, plan.primitive_bn, plan.shared)


def test_plan_choices():
    """The routes the plan takes with fast paths on (bench/engine_ab.py measures why)."""
    bnnet, plain_net = _model("resnet20"), _model("resnet20-nobn")

    def d(model, mode, bn, order=1, loss=True, device="cpu"):
        return grad_plan.decide(model, mode=mode, bn_mode=bn, default_loss=loss, order=order, device=device)

    assert d(bnnet, "sample", "per_sample").per_sample == "hooks"
    assert d(bnnet, "sample", "per_sample").instance_kernel
    assert d(bnnet, "sample", "per_sample", loss=False).per_sample == "vmap"  # a custom loss: vmap
    assert d(bnnet, "sample", "per_sample", order=2).per_sample == "vmap"  # NIO differentiates through them
    assert d(bnnet, "sample", "calibrated").per_sample == "vmap"
    assert d(bnnet, "sample", "batch").per_sample == "coupled"
    assert d(plain_net, "sample", "calibrated").per_sample == "vmap"
    assert d(bnnet, "batch", "calibrated").segments and not d(bnnet, "batch", "batch").segments
    assert not d(plain_net, "batch", "calibrated").segments and not d(bnnet, "batch", "calibrated", loss=False).segments
    assert d(bnnet, "batch", "batch").bn_first_order and not d(bnnet, "batch", "batch", order=2).bn_first_order
    assert d(bnnet, "batch", "batch", order=2).fast_conv and not d(bnnet, "batch", "batch").fast_conv
    assert d(bnnet, "sample", "calibrated").primitive_bn and not d(bnnet, "batch", "batch", order=2).primitive_bn
    assert d(bnnet, "batch", "batch", order=3).primitive_bn  # MetaInit: third order
    assert d(bnnet, "batch", "batch").channels_last and not d(bnnet, "batch", "batch", device="meta").channels_last
    shared = d(bnnet, "batch", "shared")
    assert shared.shared and shared.bn_mode == "batch" and not shared.subbatch_layout(False)
    seg = d(bnnet, "batch", "calibrated", order=2)
    assert seg.subbatch_layout(False) and not seg.subbatch_layout(True)


def test_prepare_sets_the_network_up_once_for_its_plan():
    model = _model("resnet20")
    prep = rectify_prepared(model, "batch", mode="batch")
    assert any(type(m) is fast_conv.FastConv2d for m in prep.net.modules())
    assert all(not m.first_order and not m.primitive for m in bnmod.stat_layers(prep.net))
    assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))  # caller untouched
    with fastpath.plain():
        prep = rectify_prepared(model, "batch", mode="batch")
    assert not any(type(m) is fast_conv.FastConv2d for m in prep.net.modules())

    hooks = grad_plan.prepare(model, grad_plan.decide(model, mode="sample", bn_mode="per_sample", default_loss=True))
    assert hooks.plan.per_sample == "hooks"
    assert all(m.instance_kernel and m.primitive for m in bnmod.stat_layers(hooks.net))
    first = grad_plan.prepare(model, grad_plan.decide(model, mode="batch", bn_mode="batch", default_loss=True))
    assert all(m.first_order for m in bnmod.stat_layers(first.net)) and first.segnet is None
    seg = grad_plan.prepare(model, grad_plan.decide(model, mode="batch", bn_mode="calibrated", default_loss=True))
    assert seg.plan.segments and seg.segnet is not None


def test_a_route_the_network_does_not_support_falls_back_in_the_returned_plan():
    # LayerNorm has no grad sampler: the hook route falls back to vmap
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 30 * 30),
                          nn.Linear(4 * 30 * 30, 10)).double()
    plan = grad_plan.decide(model, mode="sample", bn_mode="per_sample", default_loss=True)
    assert plan.per_sample == "hooks"
    prep = grad_plan.prepare(model, plan)
    assert prep.plan.per_sample == "vmap" and not prep.plan.instance_kernel
    assert not any(m.instance_kernel for m in bnmod.stat_layers(prep.net))
    # tied weights (one tensor in two layers): no one-pass segment network
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.weight = a.weight
    tied = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8), nn.BatchNorm1d(8), a, nn.ReLU(), b,
                         nn.Linear(8, 10)).double()
    plan = grad_plan.decide(tied, mode="batch", bn_mode="calibrated", default_loss=True)
    prep = grad_plan.prepare(tied, plan)
    assert plan.segments and not prep.plan.segments and prep.segnet is None
    assert dataclasses.replace(prep.plan, segments=True) == plan


def test_hook_grad_fn_for_copies_made_elsewhere_follows_the_plan():
    ps = bnmod.scoring_copy(_model("resnet20"), "per_sample", primitive=True)
    assert hook_grad_fn(ps, trainable(ps)) is not None
    assert all(m.instance_kernel for m in bnmod.stat_layers(ps))
    ps = bnmod.scoring_copy(_model("resnet20"), "per_sample", primitive=True)
    with fastpath.plain():
        assert hook_grad_fn(ps, trainable(ps)) is None
        assert hook_grad_fn(ps, trainable(ps), when="always") is not None  # an explicit request still gets hooks
    assert not any(m.instance_kernel for m in bnmod.stat_layers(ps))


def test_only_the_plan_reads_the_switch():
    """The route is chosen in one place: no other engine module asks fastpath.enabled()."""
    root = Path(grad_plan.__file__).parent
    readers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if re.search(r"fastpath\.(enabled|_enabled)\b", p.read_text()))
    assert readers == ["grad_plan.py"], readers
