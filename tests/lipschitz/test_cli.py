"""CLI of the propagation and lipschitz verbs: real processes (forked from a warm interpreter, tests/warm_cli.py); bad input -> exit 2, one line."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from warm_cli import run_initscore

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run(*args: str) -> subprocess.CompletedProcess:
    return run_initscore(*args, cwd=os.getcwd(), env=ENV, timeout=120)


@pytest.mark.parametrize("args", [
    ["propagation", "--arch", "no_such_net"],
    ["propagation", "--arch", "mlp", "--args", "[1"],
    ["propagation", "--arch", "mlp", "--args", '{"depth": -3}'],
    ["propagation", "--arch", "mlp", "--shape", "3,x"],
    ["propagation", "--arch", "mlp", "--data", "cifar10", "--root", "/nonexistent/dir"],
    ["propagation", "--arch", "mlp", "--level", "everything"],
    ["lipschitz", "recommend-scale", "--target", "1.5"],
    ["lipschitz", "variance", "--alpha", "-1"],
    ["lipschitz", "moments", "--k", "11"],
    ["lipschitz", "sweep", "--scales", "a,b"],
])
def test_bad_input_exit_2_one_line(args):
    p = run(*args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_propagation_json_on_synthetic(tmp_path):
    png = tmp_path / "out.png"
    p = run("propagation", "--arch", "lipschitz_mlp", "--args",
            '{"in_features": 12, "width": 8, "depth": 3, "num_classes": 4}',
            "--data", "synthetic", "--batch-size", "16", "--plot", str(png), "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["kind"] == "propagation" and len(res["layers"]) == 3
    import hashlib

    assert res["plot_sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()


def test_lipschitz_recommend_scale_json():
    p = run("lipschitz", "recommend-scale", "--target", "0.5", "--m", "8", "--n", "8", "--samples", "200", "--json")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert rec["variance"] == pytest.approx(0.5, abs=1e-4)
