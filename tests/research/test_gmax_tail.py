"""gmax_tail: reproduces an experiment's rectification and counts new batches within gamma."""
from __future__ import annotations

import copy

import pytest
import torch

from initscore import models, nio
from initscore.experiments import parse_config, run_experiment
from research.gmax_tail import _tail_stats, gmax_tail, markdown
from initscore.experiments.runner import load_splits
from initscore.scores import gradcosine

CFG = {
    "name": "tail",
    "models": [{"arch": "mlp", "args": {"in_features": 192, "hidden": 16, "depth": 2}, "label": "mlp"}],
    "data": {"kind": "synthetic", "shape": [3, 8, 8], "train_size": 128, "test_size": 48,
             "heldout_size": 32, "heldout_batch_size": 16},
    "methods": ["kaiming", "nio"],
    "seeds": [0, 1],
    "recipe": {"epochs": 1, "batch_size": 32},
    "init": {"iters": 3, "batch_size": 16, "mode": "sample", "gamma_margin": 0.3, "select": "feasible", "lr": 0.5},
}


def test_reproduces_the_experiments_heldout_gmax_and_counts_test_batches(tmp_path):
    runs = run_experiment({**CFG, "methods": ["nio"]}, tmp_path, log=lambda s: None, plots=False).runs
    rows = gmax_tail(CFG, n_images=80, log=lambda s: None)
    assert [(r["seed"], r["method"]) for r in rows] == [(0, "nio"), (1, "nio")]
    splits = load_splits(parse_config(CFG).data.model_copy(update={"test_size": 80}), torch.device("cpu"))
    for run, row in zip(runs, rows):
        # the same rectification as the experiment's: same gamma, iterate and held-out g_max per batch
        assert row["gamma"] == pytest.approx(run["init"]["gamma"], rel=1e-12)
        assert row["returned_iterate"] == run["init"]["returned_iterate"]
        assert row["heldout_gmax_over_gamma"] == pytest.approx(
            [g / run["init"]["gamma"] for g in run["init"]["exact_after"]["g_max_batches"]], rel=1e-9)
        assert row["heldout_gc_after"] == pytest.approx(run["init"]["exact_after"]["gc"], rel=1e-9)
        assert row["heldout_gc_before"] == pytest.approx(run["init"]["exact_before"]["gc"], rel=1e-9)
        # each test batch of 16 (80 images -> 5), scored independently of gmax_tail
        torch.manual_seed(row["seed"])
        base = models.build({"arch": "mlp", "args": CFG["models"][0]["args"]})
        rect = nio.rectify(base, splits.train, method="nio", seed=row["seed"], iters=3, lr=0.5, batch_size=16,
                           mode="sample", gamma_margin=0.3, select="feasible", sub_batches=2, overlap=0.6)
        net = nio.apply(copy.deepcopy(base), rect)
        for which, m in (("kaiming_ratios", base), ("rectified_ratios", net)):
            want = [gradcosine(m, (splits.test.x[i:i + 16], splits.test.y[i:i + 16]), mode="sample").g_max / rect.gamma
                    for i in range(0, 80, 16)]
            assert row[which] == pytest.approx(want, rel=1e-9), which
        a = row["rectified"]
        assert a["batches"] == 5 and a["within"] == sum(v <= 1.0 for v in row["rectified_ratios"])
        assert a["max"] == max(row["rectified_ratios"])
    assert len(markdown(rows)) == 2 + len(rows)


def test_tail_stats_quantiles_and_methods_without_a_bound():
    s = _tail_stats([0.5, 1.5, 0.9, 1.0])
    assert (s["within"], s["batches"], s["fraction_within"]) == (3, 4, 0.75)
    assert s["median"] == 0.9 and s["max"] == 1.5 and s["stderr"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)
    lines: list[str] = []
    assert gmax_tail({**CFG, "seeds": [0]}, n_images=16, methods=("metainit",), log=lines.append) == []
    assert "no gamma" in lines[0]
    with pytest.raises(ValueError, match="n_images"):
        gmax_tail(CFG, n_images=0)
