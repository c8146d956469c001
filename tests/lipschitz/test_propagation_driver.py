"""`initscore propagation` and the service's propagation job are one driver (initscore.jobs.run_job).

The CLI runs as a real process (forked from a warm interpreter, tests/warm_cli.py); its --json result must equal run_job's on the request the service would
receive, and both must equal the library's report composed by hand (weights seeded by options.seed, the batch
drawn by data.seed, train or eval mode, leaf or block level).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from warm_cli import run_initscore

ENV = dict(os.environ, OMP_NUM_THREADS="1")

MLP_ARGS = {"in_features": 48, "hidden": 16, "depth": 3, "num_classes": 4}


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_initscore("propagation", *args, cwd=os.getcwd(), env=ENV, timeout=300)


def _without_seconds(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "seconds"}


def _same_numbers(a, b, rel: float = 1e-10) -> bool:
    """Equal structure and strings; floats equal to ``rel``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_numbers(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-300)
    return a == b


def _library_report(spec: dict, data: dict, seed: int, level: str, train_mode: bool):
    """The report composed from the library's parts, without the job driver."""
    import torch

    from initscore import data as data_mod
    from initscore import models
    from initscore.contract import DataRef
    from initscore.propagation import report

    td = data_mod.load(DataRef(**data))
    batch = td.batch(data["batch_size"], data.get("seed", 0))
    torch.manual_seed(seed)
    net = models.build(spec)
    net.train(train_mode)
    return report(net, batch, seed=seed, level=level).to_result(spec["arch"])


CASES = [
    # (CLI flags, request the service would receive)
    (["--arch", "resnet20", "--args", '{"bn": false}', "--batch-size", "16", "--seed", "3", "--init-seed", "5"],
     {"kind": "propagation", "model": {"arch": "resnet20", "args": {"bn": False}},
      "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 16, "seed": 3},
      "options": {"seed": 5, "plot": False}}),
    (["--arch", "mlp", "--args", json.dumps(MLP_ARGS), "--batch-size", "32", "--seed", "1", "--init-seed", "2"],
     {"kind": "propagation", "model": {"arch": "mlp", "args": MLP_ARGS},
      "data": {"kind": "synthetic", "shape": [48], "num_classes": 4, "batch_size": 32, "seed": 1},
      "options": {"seed": 2, "plot": False}}),
    (["--arch", "resnet20", "--batch-size", "16", "--level", "block", "--eval"],
     {"kind": "propagation", "model": {"arch": "resnet20", "args": {}},
      "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 16},
      "options": {"level": "block", "train_mode": False, "plot": False}}),
]


@pytest.mark.parametrize("flags,request_", CASES, ids=["resnet20-nobn", "mlp", "resnet20-bn-block-eval"])
def test_cli_equals_run_job_equals_library(flags, request_):
    from initscore.jobs import run_job

    p = cli(*flags, "--json")
    assert p.returncode == 0, p.stderr
    from_cli = json.loads(p.stdout)
    res, weights, png = run_job(request_)
    assert weights is None and png is None
    from_job = json.loads(res.model_dump_json())
    # every variance and the CKA; float64 sums may be reduced in another order in the CLI's process (thread count)
    assert _same_numbers(_without_seconds(from_cli), _without_seconds(from_job))

    opts = {"seed": 0, "level": "leaf", "train_mode": True, **request_["options"]}
    ref = _library_report(request_["model"], request_["data"], opts["seed"], opts["level"], opts["train_mode"])
    assert [l.name for l in res.layers] == [l.name for l in ref.layers]
    for got, want in zip(res.layers, ref.layers):
        assert got.forward_var == pytest.approx(want.forward_var, rel=1e-12)
        assert got.backward_var == pytest.approx(want.backward_var, rel=1e-12)
        assert got.kind == want.kind
    assert res.input_output_cka == pytest.approx(ref.input_output_cka, rel=1e-12)
    assert res.loss == pytest.approx(ref.loss, rel=1e-12) and res.loss_kind == ref.loss_kind


def test_level_and_train_mode_change_the_report():
    """level=block reports residual blocks; eval mode (BN running statistics at init) differs from train mode."""
    from initscore.jobs import run_job

    base = CASES[2][1]
    block_eval, _, _ = run_job(base)
    assert [l.name for l in block_eval.layers if l.name.startswith("layer1.")] == ["layer1.0", "layer1.1", "layer1.2"]
    assert all(l.kind == "BasicBlock" for l in block_eval.layers if l.name.startswith("layer"))
    block_train, _, _ = run_job({**base, "options": {"level": "block", "plot": False}})
    assert [l.name for l in block_train.layers] == [l.name for l in block_eval.layers]
    assert block_train.layers[-1].forward_var != pytest.approx(block_eval.layers[-1].forward_var, rel=1e-3)
    leaf, _, _ = run_job({**base, "options": {"plot": False}})
    assert any(l.kind == "Conv2d" for l in leaf.layers) and len(leaf.layers) > len(block_train.layers)


def test_cli_table_and_plot_are_the_jobs(tmp_path):
    """The table prints the job's result; --plot writes the PNG bytes run_job returns (sha256 in the result)."""
    from initscore.jobs import run_job

    png = tmp_path / "p.png"
    p = cli("--arch", "mlp", "--args", json.dumps(MLP_ARGS), "--batch-size", "8", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    res, _, want_png = run_job({"kind": "propagation", "model": {"arch": "mlp", "args": MLP_ARGS},
                                "data": {"kind": "synthetic", "shape": [48], "num_classes": 4, "batch_size": 8}})
    assert png.read_bytes() == want_png and res.plot_sha256 == hashlib.sha256(want_png).hexdigest()
    lines = p.stdout.splitlines()
    assert lines[0].startswith("mlp {") and "(8 samples, leaf level)" in lines[0]
    assert lines[1].split() == ["depth", "layer", "kind", "fwd", "var", "bwd", "var"]
    rows = [l.split() for l in lines[2:2 + len(res.layers)]]
    assert [(r[1], r[2]) for r in rows] == [(l.name, l.kind) for l in res.layers]
    assert [float(r[3]) for r in rows] == pytest.approx([l.forward_var for l in res.layers], rel=1e-3)
    assert f"input-output linear CKA {res.input_output_cka:.4f}" in p.stdout and lines[-1] == f"plot: {png}"


def test_mlp_on_image_data_flattens_in_the_model():
    """An MLP on 3x32x32 images: the model's own Flatten shapes the input; CLI and job agree."""
    from initscore.dataref import default_root
    from initscore.jobs import run_job

    root = default_root("cifar10")
    if root is None:
        pytest.skip("no shared cifar10 copy")
    p = cli("--arch", "mlp", "--data", "cifar10", "--batch-size", "8", "--json")
    assert p.returncode == 0, p.stderr
    res, _, _ = run_job({"kind": "propagation", "model": {"arch": "mlp", "args": {}},
                         "data": {"kind": "cifar10", "root": root, "batch_size": 8, "limit": 8},
                         "options": {"plot": False}})
    assert _without_seconds(json.loads(p.stdout)) == _without_seconds(json.loads(res.model_dump_json()))


def test_unknown_arch_answers_before_torch_is_imported():
    code = ("import sys\nfrom initscore.cli import main\nsys.argv = ['initscore', 'propagation', '--arch', 'nope']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    assert p.stderr.startswith("error: unknown architecture 'nope'") and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,needle", [
    (["--arch", "mlp", "--level", "layers"], "options.level"),
    (["--arch", "mlp", "--batch-size", "0"], "data.batch_size"),
])
def test_bad_options_are_contract_errors_before_torch(flags, needle):
    code = ("import sys\nfrom initscore.cli import main\nsys.argv = ['initscore', 'propagation', *%r]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n") % (flags,)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    assert p.stderr.startswith("error: ") and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
