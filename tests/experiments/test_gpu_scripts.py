"""bench/gpu_check.py and research/nio_exploding_init.py: the device-run scripts, exercised on the CPU with real CIFAR-10."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:  # research/ is not installed: it is imported from the checkout
    sys.path.insert(0, str(ROOT))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_dry_run_on_cpu_agrees_with_float64(tmp_path, capsys):
    """The same comparison the device runs (float32 vs float64 on identical weights and images), on the CPU:
    every model/mode row is present, finite, and within the script's bound."""
    out = tmp_path / "check.json"
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    rc = _load("gpu_check").main(["--device", "cpu", "--batch", "4", "--json", str(out)])
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags  # left as found
    res = json.loads(out.read_text())
    assert rc == 0 and res["ok"] is True
    assert [(r["model"], r["mode"]) for r in res["rows"]] == [
        (m, mode) for m in ("resnet20 bn=False", "resnet20 bn=True", "resnet110 bn=False") for mode in ("sample", "batch")]
    for r in res["rows"]:
        assert 0.0 < r["ref"]["gc"] <= 1.0 and r["ref"]["gn"] > 0
        assert max(r["fp32"]["err"][k] for k in ("gc", "gn", "g_max")) <= 1e-3
    assert "worst float32 (TF32 off) relative error" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_gpu_check_without_cuda_says_so():
    assert _load("gpu_check").main(["--batch", "4"]) == 2


def test_nio_exploding_init_rows(tmp_path, capsys):
    """One cheap run (ResNet-20, 2 iterations, the absolute bound): the row records the bound it was given,
    held-out scores before/after on the same network, and the g_max trajectory it printed."""
    out = tmp_path / "rows.json"
    rows = importlib.import_module("research.nio_exploding_init").main(["--arch", "resnet20", "--iters", "2", "--seeds", "10", "--pool", "200",
                                             "--variants", "adam gamma 5", "--json", str(out)])
    assert json.loads(out.read_text()) == rows and len(rows) == 1
    r = rows[0]
    assert r["gamma"] == 5.0 and r["iters"] == 2 and 0 <= r["constrained"] <= 2
    assert set(r["gmax_trajectory"]) == {"1"}  # only k <= iters is recorded
    assert len(r["gmax_batches_after"]) == 2 and max(r["gmax_batches_after"]) == r["gmax_after"]
    assert 0.01 <= r["scale_min"] <= r["scale_max"]
    assert "| 10 | adam gamma 5 | 5 |" in capsys.readouterr().out
