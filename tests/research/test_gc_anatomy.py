"""research.gc_anatomy: GradCosine of the classifier = error cosine x feature cosine, and the
constant-prediction ceiling, checked against the engine's own per-tensor GC and closed forms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore.errors import OptionsError
from research.gc_anatomy import (
    anatomy,
    classifier_of,
    constant_prediction_ceiling,
    main,
    pair_cosine_mean,
    scaled_copy,
)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 5)).double()


def _batches(n=2, b=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 3, 2, 2, generator=g, dtype=torch.float64), torch.randint(0, 5, (b,), generator=g))
            for _ in range(n)]


def test_classifier_gc_is_error_cosine_times_feature_cosine():
    """cos(e_i h_i^T, e_j h_j^T) = cos(e_i, e_j) cos(h_i, h_j): the engine's per-tensor GC of the classifier
    weight (per-sample gradients by vmap) equals the product computed from one forward pass."""
    a = anatomy(_net(), _batches())
    assert a.classifier == "5.weight"
    assert a.product == pytest.approx(a.classifier_gc, rel=1e-10, abs=1e-12)
    assert 0 < a.feature_cosine < 1 and -1 < a.error_cosine < 1
    assert a.product != pytest.approx(a.error_cosine, rel=1e-3)  # features not parallel: the factor matters


def test_parallel_features_make_classifier_gc_the_error_cosine():
    net = _net()
    with torch.no_grad():
        net[3].weight.zero_()  # the classifier's input is tanh(b) for every sample: parallel features
        net[3].bias.uniform_(0.5, 1.0)
    a = anatomy(net, _batches())
    assert a.feature_cosine == pytest.approx(1.0, abs=1e-12)
    assert a.classifier_gc == pytest.approx(a.error_cosine, rel=1e-10)


def test_uniform_output_on_balanced_labels_has_zero_error_cosine():
    net = _net()
    with torch.no_grad():
        net[5].weight.zero_()
        net[5].bias.zero_()
    x = torch.randn(20, 3, 2, 2, dtype=torch.float64)
    y = torch.arange(20) % 5
    a = anatomy(net, [(x, y)])
    assert a.error_cosine == pytest.approx(0.0, abs=1e-12)
    assert a.max_prob == pytest.approx(0.2, rel=1e-12)


def test_constant_confident_prediction_reaches_the_ceiling():
    """All inputs predicted as class k with certainty (labels != k): EC = the closed form; 0.45 for 10 balanced
    classes when the labels include k (zero error vectors have no direction)."""
    net = _net()
    with torch.no_grad():
        net[5].weight.zero_()
        net[5].bias.copy_(torch.tensor([0.0, 0.0, 60.0, 0.0, 0.0]))
    x = torch.randn(24, 3, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 3, 4, 0, 0, 1, 3] * 3)
    a = anatomy(net, [(x, y)])
    assert a.modal_share == 1.0 and a.max_prob == pytest.approx(1.0, abs=1e-12)
    assert a.error_cosine == pytest.approx(a.ceiling, abs=1e-12)
    pi = torch.tensor([3, 2, 0, 2, 1]) / 8.0
    assert a.ceiling == pytest.approx(float(((1 - pi[2]) ** 2 + (pi ** 2).sum()) / 2), rel=1e-12)
    y10 = torch.arange(100) % 10
    assert constant_prediction_ceiling(y10, 3, 10) == pytest.approx(0.45, rel=1e-12)
    e = nn.functional.one_hot(torch.full((100,), 3), 10).double() - nn.functional.one_hot(y10, 10).double()
    assert pair_cosine_mean(e) == pytest.approx(0.45, rel=1e-12)  # rows with y = k are zero vectors


def test_scaled_copy_and_errors():
    net = _net()
    m = scaled_copy(net, 2.0)
    assert torch.equal(m[5].weight, 2 * net[5].weight) and torch.equal(m[5].bias, net[5].bias)
    m = scaled_copy(net, 3.0, ["5.*"])
    assert torch.equal(m[5].bias, 3 * net[5].bias) and torch.equal(m[1].weight, net[1].weight)
    assert classifier_of(net)[0] == "5"
    with pytest.raises(OptionsError):
        anatomy(nn.Sequential(nn.Flatten(), nn.Tanh()), _batches(1))
    with pytest.raises(OptionsError):
        anatomy(net, [])


def test_command_line_sweep_on_cifar10(capsys):
    """One seed, global x1 and classifier x2 on the no-BN ResNet-20 (real CIFAR-10): the classifier GC identity
    holds on the real network, and scaling the classifier up raises the error cosine."""
    assert main(["sweep", "--seeds", "10", "--pool", "300", "--factors", "1", "--fc-factors", "2"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| no-BN")]
    assert len(rows) == 2
    vals = [[float(v) for v in r.strip("|").split("|")[2:]] for r in rows]  # gc, gn, classifier_gc, product, ec, ...
    for v in vals:
        assert v[3] == pytest.approx(v[2], rel=1e-3)
    assert vals[1][4] > vals[0][4]


def test_from_results_rebuilds_the_recorded_networks(tmp_path):
    """The report rebuilds every run's network from its spec, seed and recorded scales: its held-out GC is the
    one the run recorded (checked inside from_results; a mismatch is an error), and NIO's rows differ."""
    from initscore.experiments import run_experiment
    from research.gc_anatomy import from_results

    cfg = {"name": "micro", "models": [{"arch": "mlp", "args": {"in_features": 192, "hidden": 16, "depth": 2}}],
           "data": {"kind": "synthetic", "shape": [3, 8, 8], "train_size": 96, "test_size": 16, "heldout_size": 32,
                    "heldout_batch_size": 16},
           "methods": ["kaiming", "nio"], "seeds": [0, 1], "recipe": {"epochs": 1, "batch_size": 32},
           "init": {"iters": 3, "batch_size": 32}}
    res = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).to_dict()
    lines: list[str] = []
    recs = from_results(res, log=lines.append)
    assert [(r["method"], r["seed"]) for r in recs] == [("kaiming", 0), ("nio", 0), ("kaiming", 1), ("nio", 1)]
    assert len(lines) == 4 and lines[1].startswith("| mlp_depth2_hidden16_in_features192, 0 | nio |")
    for r, run in zip(recs, [x for x in res["runs"]]):
        assert r["gc"] == pytest.approx(run["init"]["exact_after"]["gc"], rel=1e-4)
    assert recs[1]["gc"] != recs[0]["gc"]
    nio_run = res["runs"][1]
    wrong = {n: 3.0 * v for n, v in nio_run["init"]["scales"].items()}
    tampered = {**res, "runs": [{**nio_run, "init": {**nio_run["init"], "scales": wrong}}]}
    with pytest.raises(OptionsError, match="recorded"):
        from_results(tampered, log=lambda s: None)
