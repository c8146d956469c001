"""`initscore serve --inline` + `initscore submit|status|wait|fetch` as real processes (the verbs forked from a
warm interpreter, tests/warm_cli.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from svc_helpers import REPO, free_port
from warm_cli import run_initscore


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return run_initscore(*args, cwd=REPO, env=env, timeout=120)


def test_inline_server_and_cli_verbs(tmp_path) -> None:
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_ARTIFACT_DIR=str(tmp_path / "a"),
               INITSCORE_URL=f"http://127.0.0.1:{port}")
    env.pop("INITSCORE_REDIS_URL", None)
    srv = subprocess.Popen([sys.executable, "-m", "initscore", "serve", "--inline", "--port", str(port)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert srv.poll() is None and time.time() < deadline, srv.stderr.read().decode()[-2000:] if srv.poll() is not None else "timeout"
            time.sleep(0.2)
        args = json.dumps({"in_features": 48, "hidden": 8, "depth": 3, "num_classes": 4})
        r = _cli("submit", "rectify", "--arch", "mlp", "--args", args, "--data", "synthetic", "--batch-size", "8",
                 "--options", '{"iters": 3, "heldout_batches": 0}', "--json", env=env)
        # synthetic data has 10 classes by default, the model 4 outputs: refused by the API, nothing queued
        assert r.returncode == 2 and "data.num_classes" in r.stderr, r.stderr
        r = _cli("submit", "rectify", "--arch", "mlp", "--args", args, "--data", "synthetic", "--batch-size", "8",
                 "--num-classes", "4", "--options", '{"iters": 3, "heldout_batches": 0}', "--json", env=env)
        assert r.returncode == 0, r.stderr
        mismatch = json.loads(r.stdout)  # default synthetic shape 3x32x32 does not fit in_features=48
        w = _cli("wait", mismatch["id"], "--timeout", "60", env=env)
        assert w.returncode == 1 and "does not accept inputs of shape [3, 32, 32]" in w.stdout, w.stdout
        r = _cli("submit", "rectify", "--arch", "mlp", "--args", args, "--data", "synthetic", "--batch-size", "8",
                 "--shape", "3,4,4", "--num-classes", "4",
                 "--options", '{"iters": 3, "heldout_batches": 0}', "--json", env=env)
        assert r.returncode == 0, r.stderr
        job = json.loads(r.stdout)
        w = _cli("wait", job["id"], "--timeout", "60", env=env)
        assert w.returncode == 0 and "finished" in w.stdout, w.stderr
        s = _cli("status", job["id"], "--json", env=env)
        assert json.loads(s.stdout)["status"] == "finished"
        out = tmp_path / "w.safetensors"
        f = _cli("fetch", job["id"], "--out", str(out), "--result", str(tmp_path / "r.json"), env=env)
        assert f.returncode == 0 and out.stat().st_size > 0, f.stderr
        assert json.loads((tmp_path / "r.json").read_text())["kind"] == "rectify"
        bad = _cli("submit", "score", "--arch", "nope", env=env)
        assert bad.returncode == 2 and "422" in bad.stderr and "unknown architecture" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        srv.terminate()
        srv.wait(timeout=10)
