"""The memory phase of bench/soak.py: its flatness arithmetic, its job mix, and its code path on a handful of jobs."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter

from initscore.contract import JobRequest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("soak", REPO / "bench" / "soak.py")
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)


def test_lsq_slope_matches_float64_polyfit():
    rng = np.random.default_rng(0)
    xs = np.arange(0, 1000, 25, dtype=np.float64)
    ys = 700 + 0.013 * xs + rng.normal(0, 0.5, xs.size)
    assert soak.lsq_slope(list(xs), list(ys)) == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-12, abs=1e-15)
    assert soak.lsq_slope([5.0], [1.0]) == 0.0


def test_flatness_verdicts():
    jobs = list(range(0, 1001, 25))
    flat = [520.0 if j == 0 else 800.0 + (j % 50) * 0.01 for j in jobs]  # warm-up jump, then flat
    assert soak.flatness(jobs, flat, 500)["ok"]
    leak = [800.0 + 0.03 * j for j in jobs]  # 3 MiB per 100 jobs
    v = soak.flatness(jobs, leak, 500)
    assert not v["ok"] and v["slope"] == pytest.approx(3.0)
    step = [800.0 if j < 990 else 850.0 for j in jobs]  # a 6% jump at the end: slope is small-ish, growth is not
    v = soak.flatness(jobs, step, 500)
    assert not v["ok"] and v["growth"] == pytest.approx(50 / 800)
    assert not soak.flatness([0, 10], [1.0, 1.0], 500)["ok"]  # no checkpoint after warm-up: no verdict


@pytest.mark.parametrize("root", [None, "/data/cifar10_jpeg"])
def test_memory_plan_is_valid_and_mixed(root):
    plan = soak.memory_plan(200, 0, root)
    adapter = TypeAdapter(JobRequest)
    kinds = {adapter.validate_python(p["body"]).kind for p in plan}
    assert kinds == {"score", "batch", "rectify"}
    assert {p["what"] for p in plan} == {"score-sample", "score-batch", "score-proxies", "batch", "rectify"}
    assert plan == soak.memory_plan(200, 0, root)  # deterministic for a seed


def test_memory_phase_runs_end_to_end(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed (make setup installs it)")
    out = tmp_path / "mem.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--memory-only", "--memory-jobs", "6",
                        "--memory-every", "2", "--memory-clients", "2", "--memory-data", "synthetic", "--memory-json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    assert r.returncode in (0, 1), r.stderr[-3000:]  # 1: the flatness verdict on 6 jobs is noise, not checked here
    d = json.loads(out.read_text())
    assert d["outcomes"] == {"finished": 6}
    assert d["workers_alive"] == {"worker0": True, "worker1": True}
    assert [c["jobs"] for c in d["checkpoints"]] == [0, 2, 4, 6]
    for c in d["checkpoints"]:
        assert all(c[k] and c[k] > 5 for k in ("api", "worker0", "worker1"))
    assert set(d["verdicts"]) == {"api", "worker0", "worker1"}
    assert "PASS" in r.stdout or "FAIL" in r.stdout
