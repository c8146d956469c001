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
