"""Rectify options in the job contract reach the engine (initscore.jobs.run_job -> initscore.nio.rectify)."""
from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from initscore.contract import RectifyOptions
from initscore.jobs import parse_request, run_job

RECTIFY = {
    "kind": "rectify",
    "model": {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 3, "num_classes": 4}},
    "data": {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8, "seed": 1, "limit": 64},
    "options": {"iters": 4, "lr": 0.05, "heldout_batches": 1, "gamma": 1e6},
}


def _with(**opts):
    req = copy.deepcopy(RECTIFY)
    req["options"].update(opts)
    return req


def test_gn_weight_reaches_rectify_and_changes_the_step():
    default, _, _ = run_job(RECTIFY)
    gc_only, _, _ = run_job(_with(gn_weight=0.0))
    again, _, _ = run_job(_with(gn_weight=0.0))
    assert again.scales == gc_only.scales  # deterministic
    assert gc_only.scales != default.scales
    # GC-only ascent: the first unconstrained step cannot be driven by GN alone
    assert default.history[0].constrained is False and gc_only.history[0].constrained is False


def test_contract_defaults_and_bounds():
    o = RectifyOptions()
    assert o.gn_weight == 1.0 and o.bn is None
    with pytest.raises(ValidationError):
        RectifyOptions(gn_weight=-1.0)
    with pytest.raises(ValidationError):
        RectifyOptions(bn="running")
    assert parse_request(_with(bn="calibrated", mode="sample")).options.bn == "calibrated"


def test_feasible_selection_and_margin_reach_rectify():
    res, _, _ = run_job(_with(select="feasible", gamma_margin=0.2, gamma=None))
    assert res.select == "feasible" and res.gamma_margin == 0.2
    assert res.final is not None and res.final.it == len(res.history) + 1
    assert res.returned_iterate is not None and 0 <= res.returned_iterate <= len(res.history) + 1
    with pytest.raises(ValidationError):
        RectifyOptions(gamma_margin=1.0)



def test_rescale_adam_and_grad_clip_reach_rectify():
    """optimizer='rescale_adam' and grad_clip go through the job contract to the engine. Every step here is an
    ascent step (gamma 1e6): unclipped, RescaleAdam is torch's Adam; clipped hard, its steps change."""
    adam, _, _ = run_job(RECTIFY)
    ra_noclip, _, _ = run_job(_with(optimizer="rescale_adam", grad_clip=0.0))
    ra_clip, _, _ = run_job(_with(optimizer="rescale_adam", grad_clip=1e-4))
    assert not any(h.constrained for h in adam.history)
    assert ra_noclip.scales == pytest.approx(adam.scales, rel=1e-6)
    assert ra_clip.scales != pytest.approx(adam.scales, rel=1e-6)
    req = parse_request(_with(optimizer="rescale_adam", grad_clip=0.5))
    assert (req.options.optimizer, req.options.grad_clip) == ("rescale_adam", 0.5)
    with pytest.raises(ValidationError):
        RectifyOptions(optimizer="rmsprop")
    with pytest.raises(ValidationError):
        RectifyOptions(grad_clip=-1.0)
    assert RectifyOptions().optimizer == "adam" and RectifyOptions().grad_clip == 1.0


def test_scale_tensors_reach_rectify_and_the_result():
    """options.scale_tensors restricts the scales; the others are reported as fixed and stay at 1."""
    from initscore.errors import OptionsError

    res, state, _ = run_job(_with(scale_tensors=["net.3.*"]))
    assert res.fixed == ["net.1.weight", "net.1.bias", "net.5.weight", "net.5.bias"]
    assert all(res.scales[n] == 1.0 for n in res.fixed)
    assert res.scales["net.3.weight"] != 1.0 and res.scales["net.3.bias"] != 1.0
    full, _, _ = run_job(RECTIFY)
    assert full.fixed == [] and full.scales["net.1.weight"] != 1.0
    with pytest.raises(OptionsError, match="'fc.weight' matches no scalable parameter tensor"):
        run_job(_with(scale_tensors=["fc.weight"]))
    for bad in ([], [""], "net.1.weight", ["x" * 201]):
        with pytest.raises(ValidationError):
            RectifyOptions(scale_tensors=bad)
    assert RectifyOptions().scale_tensors is None


def test_verify_batches_reach_rectify_and_the_result():
    """options.verify_batches goes through the job contract to the engine and comes back as result.verification;
    it needs a select that checks iterates ('feasible' / 'best')."""
    res, _, _ = run_job(_with(select="feasible", gamma_margin=0.2, gamma=None, verify_batches=2))
    v = res.verification
    assert v is not None and v.batches == 2 and v.checked
    assert v.checked[-1].iterate == res.returned_iterate and v.checked[-1].passed == v.passed
    plain, _, _ = run_job(_with(select="feasible", gamma_margin=0.2, gamma=None))
    assert plain.verification is None
    assert [h.g_max for h in res.history] == [h.g_max for h in plain.history]  # same trajectory
    with pytest.raises(ValidationError, match="verify_batches"):
        RectifyOptions(verify_batches=2)  # select='last'
    for bad in (-1, 65, 1.5):
        with pytest.raises(ValidationError):
            RectifyOptions(select="feasible", verify_batches=bad)
    assert RectifyOptions().verify_batches == 0


def test_official_profile_reaches_rectify_and_score():
    """profile/split/objective/gn_mul go through the contract to the engine; the defaults depend on the profile."""
    res, _, _ = run_job(_with(profile="official", objective="gc_gn_sqrt", gn_mul=0.5, sub_batches=2, overlap=0.2))
    paper, _, _ = run_job(_with(sub_batches=2, overlap=0.2))
    assert res.scales != paper.scales
    req = parse_request(_with(profile="official"))
    assert req.options.optimizer == "rescale_adam" and req.options.overlap is None
    assert parse_request(RECTIFY).options.optimizer == "adam"
    for bad in (dict(objective="gc"), dict(profile="official", mode="sample"), dict(profile="official", method="metainit"),
                dict(split="halves"), dict(bn="shared", mode="sample")):
        with pytest.raises(ValidationError):
            parse_request(_with(**bad))
    score = {"kind": "score", "model": RECTIFY["model"], "data": RECTIFY["data"],
             "options": {"mode": "batch", "profile": "official", "sub_batches": 4, "overlap": 0.2, "split": "cover"}}
    s, _, _ = run_job(score)
    assert s.n == 4 and s.mode == "batch"


def test_the_driver_names_a_model_that_does_not_fit_the_data_and_too_few_samples():
    import pytest

    from initscore.errors import OptionsError
    from initscore.jobs import run_job

    data = {"kind": "synthetic", "shape": [12], "num_classes": 10, "batch_size": 8, "seed": 0}
    with pytest.raises(OptionsError, match=r"does not accept inputs of shape \[12\]"):
        run_job({"kind": "score", "model": {"arch": "mlp", "args": {"in_features": 13}}, "data": data})
    with pytest.raises(OptionsError, match="outputs \\[4\\] values per sample but the data has 10 classes"):
        run_job({"kind": "score", "model": {"arch": "mlp", "args": {"in_features": 12, "num_classes": 4}}, "data": data})
    batch = run_job({"kind": "batch", "models": [{"arch": "mlp", "args": {"in_features": 13}},
                                                 {"arch": "mlp", "args": {"in_features": 12}}], "data": data})[0]
    failed = [e for e in batch.entries if e.status == "failed"]
    assert len(failed) == 1 and "does not accept inputs" in failed[0].error
    with pytest.raises(OptionsError, match="too few for 2 held-out batch"):
        run_job({"kind": "rectify", "model": {"arch": "mlp", "args": {"in_features": 12}},
                 "data": {**data, "limit": 20}, "options": {"iters": 1, "heldout_batches": 2}})
