"""The no-BN study's prototype loop is nio.rectify (sample mode, margin, last feasible iterate) step for step."""
from __future__ import annotations

import pytest
import torch

from initscore import models, nio
from initscore.experiments.config import DataConfig
from research.nobn_study import prototype_rectify, scale_slopes
from initscore.experiments.runner import load_splits

SPEC = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 2}}
DATA = DataConfig(kind="synthetic", shape=(3, 4, 4), train_size=64, test_size=1, heldout_size=32, heldout_batch_size=16)


@pytest.mark.parametrize("gn_weight", [1.0, 0.0])
def test_prototype_matches_engine(gn_weight: float) -> None:
    splits = load_splits(DATA, torch.device("cpu"))
    proto = prototype_rectify(splits, 3, spec=SPEC, gn_weight=gn_weight, lr=0.1, iters=6, batch_size=16,
                              margin=0.3, log=lambda s: None)
    torch.manual_seed(3)
    rect = nio.rectify(models.build(SPEC), splits.train, method="nio", mode="sample", iters=6, lr=0.1,
                       batch_size=16, seed=3, gn_weight=gn_weight, gamma_margin=0.3, select="feasible")
    assert proto["returned_iterate"] == rect.returned_iterate
    assert proto["gamma"] == pytest.approx(rect.gamma, rel=1e-12)
    assert [h["constrained"] for h in proto["history"][:-1]] == [h["constrained"] for h in rect.history]
    for n, v in rect.scales.items():
        assert proto["scales"][n] == pytest.approx(v, rel=1e-6, abs=1e-7)


def test_loggn_constraint_and_slopes_run() -> None:
    splits = load_splits(DATA, torch.device("cpu"))
    r = prototype_rectify(splits, 0, spec=SPEC, gn_weight=0.0, lr=0.03, iters=3, batch_size=16,
                          constraint="loggn", split_optimizer=True, log=lambda s: None)
    assert len(r["history"]) == 4 and 0 <= r["returned_iterate"] <= 3
    s = scale_slopes(splits, 0, spec=SPEC, batches=2, fd_tensors=1, fd_eps=(1e-4,), global_scales=(1.0,),
                     log=lambda s: None)
    assert len(s["slopes"]) == 2 and s["global"][0]["c"] == 1.0
    with pytest.raises(ValueError):
        prototype_rectify(splits, 0, spec=SPEC, constraint="other", log=lambda s: None)


# The study's own loop (a step-for-step copy of NIO's, before it used nio.rectify's hooks) gave these on
# SPEC/DATA, seed 0, 6 iterations of 16, margin 0.3: the hooks must reproduce its numbers (float32: to a
# tolerance, since another thread count reduces the sums in another order).
OLD_LOOP = {
    ("loggn", True): ([False, False, False, True, False, False, True],
                      {"net.1.weight": 1.297093272, "net.1.bias": 1.29455626, "net.3.weight": 1.299943209,
                       "net.3.bias": 1.247685552}),
    ("loggn", False): ([False, False, False, True, True, False, True],
                       {"net.1.weight": 1.414855838, "net.1.bias": 1.415378571, "net.3.weight": 1.427345991,
                        "net.3.bias": 1.359300852}),
    ("gn", False): ([False, False, False, True, True, False, True],
                    {"net.1.weight": 1.319843531, "net.1.bias": 1.328546405, "net.3.weight": 1.348722339,
                     "net.3.bias": 1.277335525}),
}


@pytest.mark.parametrize("constraint, split", list(OLD_LOOP))
def test_the_switches_reproduce_the_old_loop(constraint: str, split: bool) -> None:
    splits = load_splits(DATA, torch.device("cpu"))
    lines: list[str] = []
    r = prototype_rectify(splits, 0, spec=SPEC, gn_weight=1.0, lr=0.1, iters=6, batch_size=16, margin=0.3,
                          constraint=constraint, split_optimizer=split, trace=True, log=lines.append)
    constrained, scales = OLD_LOOP[(constraint, split)]
    assert [h["constrained"] for h in r["history"]] == constrained
    assert r["returned_iterate"] == 5 and r["gamma"] == pytest.approx(11.861048744915188, rel=1e-5)
    assert r["scales"] == pytest.approx(scales, rel=1e-5)
    assert len(lines) == 7 and lines[3].startswith("it  4 down")  # 6 traced steps and the summary
