"""nio.Context and nio.heldout_scores take the one options model (RectifyOptions / ScoreOptions) instead of
repeating its fields as loose keyword arguments; the keyword form stays and means the same."""
from __future__ import annotations

import pytest
import torch

from initscore import bn as bnmod
from initscore.contract import RectifyOptions, ScoreOptions
from initscore.errors import OptionsError
from initscore.nio import Context, ScaledParams, heldout_scores, nio_objective, rectify_prepared, score_options
from initscore.scores import gradcosine, trainable

from engine_helpers import tiny_conv


def _batches(n: int = 2):
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 5, (8,), generator=g))
            for _ in range(n)]


def test_context_reads_its_settings_from_rectify_options():
    model = tiny_conv(bn=True).double()
    o = RectifyOptions(mode="batch", sub_batches=3, overlap=0.25, bn="calibrated", gn_weight=0.5,
                       profile="official", objective="gv_gn", gn_mul=2.0, split="cover")
    net = rectify_prepared(model, "calibrated", mode="batch").net
    ctx = Context(net, None, o)
    assert (ctx.mode, ctx.sub_batches, ctx.overlap, ctx.split, ctx.bn_mode) == ("batch", 3, 0.25, "cover", "calibrated")
    assert (ctx.profile, ctx.objective, ctx.gn_weight, ctx.gn_mul, ctx.has_bn) == ("official", "gv_gn", 0.5, 2.0, True)
    assert ctx.options is o and ctx.plan.segments and ctx.segnet() is not None
    # the profile's defaults are resolved as rectify resolves them
    d = Context(net, None, RectifyOptions(mode="batch"))
    assert (d.overlap, d.split, d.bn_mode, d.objective) == (0.6, "eq7", "batch", "gc")
    with pytest.raises(OptionsError, match="sub_batches"):
        Context(net, None, sub_batches=1)
    with pytest.raises(TypeError):
        Context(net, None, sub_batchez=2)


def test_context_keyword_form_equals_options_form():
    model = tiny_conv(bn=True).double()
    (x, y), = _batches(1)
    values = []
    for make in (lambda net: Context(net=net, loss=None, mode="batch", bn_mode="batch", has_bn=True, sub_batches=2,
                                     overlap=0.5, gamma=1e12),
                 lambda net: Context(net, None, RectifyOptions(mode="batch", overlap=0.5), gamma=1e12)):
        net = bnmod.scoring_copy(model, "batch", primitive=False)
        ctx = make(net)
        sp = ScaledParams(trainable(net))
        obj, rec, _ = nio_objective(ctx, sp.params(), x, y)
        values.append((float(obj.detach()), torch.autograd.grad(obj, list(sp.scales.values()))))
    assert values[0][0] == values[1][0]
    for a, b in zip(values[0][1], values[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_heldout_scores_take_score_options():
    model = tiny_conv(bn=True).double()
    held = _batches()
    o = ScoreOptions(mode="batch", sub_batches=2, overlap=0.5, bn="calibrated", split="cover")
    got = heldout_scores(model, None, held, o)
    ref = [gradcosine(model, b, mode="batch", sub_batches=2, overlap=0.5, bn="calibrated", split="cover") for b in held]
    assert got["gc"] == pytest.approx(sum(r.gc for r in ref) / 2, rel=1e-12)
    assert got["g_max"] == pytest.approx(max(r.g_max for r in ref), rel=1e-12)
    # the keyword form (fields applied on top of the options) is the same
    assert heldout_scores(model, None, held, mode="batch", sub_batches=2, overlap=0.5, bn="calibrated",
                          split="cover", loss=None) == got
    with pytest.raises(OptionsError, match="overlap"):
        heldout_scores(model, None, held, overlap=1.5)
    assert heldout_scores(model, None, [], o) == {}
    # a rectification scores its held-out batches with its own score settings
    r = RectifyOptions(mode="batch", sub_batches=2, overlap=0.5, bn="calibrated", split="cover", iters=3, lr=0.2)
    assert score_options(r) == ScoreOptions(mode="batch", sub_batches=2, overlap=0.5, bn="calibrated", split="cover")
