"""initscore.fastpath: every fast path off gives the plain reference path, and both give the same numbers
(float64) over registry models x score modes x BatchNorm modes, and for NIO steps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore import bn as bnmod
from initscore import fast_conv, fastpath, models
from initscore.hook_grads import hook_grad_fn
from initscore.scores import gradcosine, trainable
from initscore.segments import for_batch_mode

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
MODELS = [
    ("resnet20", {}),
    ("resnet20", {"bn": False}),
    ("nb201", {"cell": CELL, "C": 4, "N": 1}),
    ("densenet", {"depth": 10}),
    ("wrn", {"depth": 10, "width": 1}),
    ("mlp", {"hidden": 16}),
]
MODES = [("sample", "calibrated"), ("sample", "per_sample"), ("batch", "batch"), ("batch", "calibrated")]


def _batch(n: int = 6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def _model(name, kwargs):
    torch.manual_seed(1)
    return models.create(name, **kwargs).double()


def test_the_switch_turns_each_fast_path_off_and_restores_it():
    net = bnmod.scoring_copy(_model("resnet20", {}), "calibrated", primitive=False)
    ps = bnmod.scoring_copy(_model("resnet20", {}), "per_sample", primitive=True)
    assert fastpath.enabled()
    assert for_batch_mode(net, has_bn=True, bn_mode="calibrated", default_loss=True) is not None
    assert hook_grad_fn(ps, trainable(ps)) is not None
    x, _ = _batch(2)
    from initscore.scores import fast_layout

    assert fast_layout(x).is_contiguous(memory_format=torch.channels_last)
    with fastpath.plain():
        assert not fastpath.enabled()
        assert for_batch_mode(net, has_bn=True, bn_mode="calibrated", default_loss=True) is None
        assert hook_grad_fn(ps, trainable(ps)) is None
        assert hook_grad_fn(ps, trainable(ps), when="always") is not None  # an explicit request still gets hooks
        assert fast_layout(x) is x
        conv = nn.Sequential(nn.Conv2d(3, 3, 3))
        assert type(fast_conv.install(conv)[0]) is nn.Conv2d
        bnmod.set_first_order(net)
        assert not any(m.first_order for m in bnmod.stat_layers(net))
    assert fastpath.enabled()
    assert type(fast_conv.install(nn.Sequential(nn.Conv2d(3, 3, 3)))[0]) is fast_conv.FastConv2d


@pytest.mark.parametrize("mode,bn", MODES, ids=[f"{m}-{b}" for m, b in MODES])
@pytest.mark.parametrize("name,kwargs", MODELS, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in MODELS])
def test_scores_fast_equal_plain(name, kwargs, mode, bn):
    model = _model(name, kwargs)
    batch = _batch()
    kw = {"sub_batches": 2, "overlap": 0.5} if mode == "batch" else {}
    fast = gradcosine(model, batch, mode=mode, bn=bn, **kw)
    with fastpath.plain():
        plain = gradcosine(model, batch, mode=mode, bn=bn, **kw)
    for attr in ("gc", "gn", "g_max", "g_min"):
        assert getattr(fast, attr) == pytest.approx(getattr(plain, attr), rel=1e-9, abs=1e-12), attr
    # per tensor; a tensor whose true gradient is 0 (a BN bias feeding a per-sample BN) holds rounding noise
    # (norm ~1e-17) whose cosine means nothing on either path
    top = max(l.gn for l in plain.layers)
    for lf, lp in zip(fast.layers, plain.layers):
        assert lf.name == lp.name and lf.gn == pytest.approx(lp.gn, rel=1e-8, abs=1e-12 * top), lf.name
        if lp.gn > 1e-9 * top:
            assert lf.gc == pytest.approx(lp.gc, rel=1e-8, abs=1e-10), lf.name


@pytest.mark.parametrize("mode,bn", [("batch", "batch"), ("batch", "calibrated"), ("sample", "calibrated")])
@pytest.mark.parametrize("arch", [{}, {"bn": False}], ids=["bn", "nobn"])
def test_nio_steps_fast_equal_plain(arch, mode, bn):
    from initscore.nio import rectify

    model = _model("resnet20", arch)
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(8, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g))
            for _ in range(2)]
    kw = dict(iters=2, lr=0.05, mode=mode, bn=bn, sub_batches=2, overlap=0.5, seed=0)
    fast = rectify(model, data, **kw)
    with fastpath.plain():
        plain = rectify(model, data, **kw)
    for k, v in fast.scales.items():
        assert v == pytest.approx(plain.scales[k], rel=1e-8, abs=1e-10), k
    for hf, hp in zip(fast.history, plain.history):
        assert hf["gc"] == pytest.approx(hp["gc"], rel=1e-8) and hf["g_max"] == pytest.approx(hp["g_max"], rel=1e-8)
