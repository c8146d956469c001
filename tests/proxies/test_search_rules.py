"""The shipped `ensemble`'s calibration constants are the committed caches' calibration cells' own (the main cache
and the identity_gain cache), and bench/nb201_search_rules.py's "ensemble4" rule is `ensemble_score` without its
identity_gain term."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

from initscore.proxies.ensemble import CALIBRATION, INPUTS, ensemble_score

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "bench" / "results" / "nb201_cache_s4242.jsonl"
IDENTITY = ROOT / "bench" / "results" / "nb201_identity_gain_s4242.jsonl"


def rules_module():
    spec = importlib.util.spec_from_file_location("nb201_search_rules", ROOT / "bench" / "nb201_search_rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def calibration_cells():
    if not (CACHE.is_file() and IDENTITY.is_file()):
        pytest.skip("no committed NB201 cache")
    mod = rules_module()
    recs = mod.load([CACHE, IDENTITY])
    cal = [i for i in random.Random(4242).sample(range(15625), 1200)[300:500] if i in recs and not recs[i].get("error")]
    return mod, recs, cal


def test_rules_normalize_like_the_shipped_calibration(calibration_cells):
    mod, recs, cal = calibration_cells
    assert len(cal) == 195
    for m in INPUTS:
        t = mod.transform(m, np.array([recs[i]["values"][m] for i in cal], float))
        assert (float(np.nanmean(t)), float(np.nanstd(t))) == pytest.approx(CALIBRATION[m], rel=1e-9)


def test_ensemble4_rule_is_ensemble_score_without_identity_gain(calibration_cells):
    mod, recs, cal = calibration_cells
    z = {m: (mod.transform(m, np.array([recs[i]["values"][m] for i in cal], float)) - CALIBRATION[m][0])
         / CALIBRATION[m][1] for m in INPUTS}
    got = mod.rule_scores(mod.RULES["ensemble4 (no identity_gain)"], z, 0.0)
    want = np.array([ensemble_score(recs[i]["values"]) for i in cal]) - mod.log_ndtr(z["identity_gain"])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # a different rule is a different order (the comparison can fail)
    other = mod.rule_scores(mod.RULES["sum z (linear)"], z, 0.0)
    assert not np.array_equal(np.argsort(other), np.argsort(want))


def test_gate_puts_every_cell_above_the_threshold_first():
    mod = rules_module()
    z = {m: np.array([-2.0, 0.5, 1.0, 3.0]) for m in mod.ENS}  # the gate is on the bench's four-input ensemble
    z["params"] = np.array([9.0, 2.0, -1.0, 0.0])
    e = sum(np.asarray(mod.log_ndtr(z[m])) for m in mod.ENS)
    s = mod.rule_scores(("gate", ("params",), 0.0), z, float(e[1]))
    # cells 1..3 pass the gate and are ordered by params (1 > 3 > 2); cell 0 (best params) is below the gate
    assert list(np.argsort(-s)) == [1, 3, 2, 0]
