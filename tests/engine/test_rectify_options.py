"""nio.rectify takes the job contract's RectifyOptions (the one declaration), keyword overrides validated by
pydantic, reports each step to ``on_step``, and converts to the contract's result with ``to_result``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore.contract import RectifyOptions, RectifyResult
from initscore.errors import OptionsError
from initscore.jobs import run_job
from initscore.nio import NioStep, rectify


def _problem():
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(8):
        y = torch.randint(0, 3, (16,), generator=g)
        batches.append((torch.randn(16, 6, generator=g) + y[:, None].float(), y))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return net, batches


def test_keywords_are_overrides_of_the_options_object():
    net, data = _problem()
    by_kw = rectify(net, data, iters=4, lr=0.05, gamma_margin=0.1, select="feasible")
    by_obj = rectify(net, data, RectifyOptions(iters=4, lr=0.05, gamma_margin=0.1, select="feasible"))
    mixed = rectify(net, data, RectifyOptions(iters=4, lr=0.9, gamma_margin=0.1), lr=0.05, select="feasible")
    assert by_kw.scales == by_obj.scales == mixed.scales
    assert by_kw.options == by_obj.options == mixed.options
    assert mixed.options.lr == 0.05  # the keyword wins over the object
    other = rectify(net, data, iters=4, lr=0.2, gamma_margin=0.1, select="feasible")
    assert other.scales != by_kw.scales


def test_a_profile_override_derives_the_profile_defaults_again():
    assert RectifyOptions().updated(profile="official").optimizer == "rescale_adam"
    assert RectifyOptions(optimizer="sgd").updated(profile="official").optimizer == "sgd"  # explicit stays
    assert RectifyOptions(profile="official").updated(profile="paper").optimizer == "adam"


def test_unknown_keywords_are_type_errors_naming_them():
    net, data = _problem()
    with pytest.raises(TypeError, match="'itres'"):
        rectify(net, data, itres=3)
    with pytest.raises(TypeError, match="heldout_batches is the job driver's"):
        rectify(net, data, iters=1, heldout_batches=2)
    with pytest.raises(TypeError, match="RectifyOptions"):
        rectify(net, data, {"iters": 2})


@pytest.mark.parametrize("kwargs, field", [
    ({"iters": True}, "iters"), ({"iters": "3"}, "iters"), ({"lr": float("inf")}, "lr"), ({"lr": 1000.0}, "lr"),
    ({"method": "lsuv"}, "method"), ({"scale_tensors": "0.weight"}, "scale_tensors"),
    ({"objective": "gv"}, "objective"), ({"profile": "official", "method": "gradinit"}, "profile='official'"),
])
def test_bad_values_are_options_errors_naming_the_field(kwargs, field):
    net, data = _problem()
    with pytest.raises(OptionsError, match=field):
        rectify(net, data, **{"iters": 1, **kwargs})


def test_a_tuple_stands_for_a_list():
    net, data = _problem()
    r = rectify(net, data, iters=2, scale_tensors=("0.*",))
    assert r.fixed == ("2.weight", "2.bias") and r.options.scale_tensors == ["0.*"]


def test_on_step_sees_every_iteration_as_recorded():
    net, data = _problem()
    steps: list[NioStep] = []
    r = rectify(net, data, iters=6, lr=0.2, gamma_margin=0.5, on_step=steps.append)
    assert [s.iteration for s in steps] == list(range(1, 7)) and {s.total for s in steps} == {6}
    assert [(s.gc, s.gn, s.g_max, s.constrained) for s in steps] == [
        (h["gc"], h["gn"], h["g_max"], h["constrained"]) for h in r.history]
    assert {s.gamma for s in steps} == {r.gamma}
    assert any(s.constrained for s in steps) and not all(s.constrained for s in steps)
    assert dict(steps[-1].scales) == r.scales  # select="last": the scales after the last step
    assert steps[0].scales != steps[-1].scales
    with pytest.raises(TypeError):
        steps[0].scales["0.weight"] = 2.0  # a read-only view
    with pytest.raises(OptionsError, match="on_step"):
        rectify(net, data, iters=1, on_step=3)


def test_to_result_is_the_contract_result():
    net, data = _problem()
    r = rectify(net, data, iters=3, select="feasible", verify_batches=1, heldout=data[-2:])
    res = r.to_result("tiny", 99)
    assert isinstance(res, RectifyResult) and (res.arch, res.params, res.method) == ("tiny", 99, "nio")
    assert [h.model_dump() for h in res.history] == [dict(h) for h in r.history]
    assert res.final.model_dump() == r.final and res.verification.batches == 1
    assert res.scales == r.scales and res.heldout_after == r.heldout_after


def test_the_job_driver_passes_the_request_options_through():
    req = {"kind": "rectify", "model": {"arch": "mlp", "args": {"in_features": 12, "hidden": 8, "depth": 2,
                                                                 "num_classes": 3}},
           "data": {"kind": "synthetic", "shape": [12], "num_classes": 3, "batch_size": 8, "limit": 48},
           "options": {"iters": 3, "lr": 0.05, "gn_weight": 0.5, "heldout_batches": 1}}
    res, _, _ = run_job(req)
    torch.manual_seed(0)
    from initscore import models
    from initscore.data import load
    from initscore.contract import DataRef

    td = load(DataRef(**req["data"]))
    train, held = td.split(8, 0)
    direct = rectify(models.build(req["model"]), train.batches(8, 0), RectifyOptions(**req["options"]),
                     heldout=[(held.x, held.y)])
    assert res.scales == direct.scales and res.heldout_after == direct.heldout_after


def test_max_scale_bounds_every_scale_from_above():
    net, data = _problem()
    free = rectify(net, data, iters=6, lr=0.3, gamma=1e9)
    assert max(free.scales.values()) > 1.2
    capped = rectify(net, data, iters=6, lr=0.3, gamma=1e9, max_scale=1.2)
    assert max(capped.scales.values()) == pytest.approx(1.2) and all(v <= 1.2 + 1e-7 for v in capped.scales.values())
    assert capped.history[0] == free.history[0]  # the first measurement precedes any clamp
    assert rectify(net, data, iters=6, lr=0.3, gamma=1e9, max_scale=1e6).scales == free.scales
    for bad in (0.5, 0.0, float("nan")):
        with pytest.raises(OptionsError, match="max_scale"):
            rectify(net, data, iters=1, max_scale=bad)
    req = {"kind": "rectify", "model": {"arch": "mlp", "args": {"in_features": 12, "num_classes": 3}},
           "data": {"kind": "synthetic", "shape": [12], "num_classes": 3, "batch_size": 8, "limit": 48},
           "options": {"iters": 4, "lr": 0.3, "gamma": 1e9, "heldout_batches": 1, "max_scale": 1.1}}
    res, _, _ = run_job(req)
    assert max(res.scales.values()) <= 1.1 + 1e-7
