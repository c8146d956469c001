"""Paths that do not depend on the working directory: the artifact store and data roots.

The queued quickstart started the API and the worker in different directories; the
default relative artifact directory then differed, and a finished job showed
`error: store-error`, `result: null`. Here a REAL uvicorn API and a REAL worker run in
two different working directories with no INITSCORE_ARTIFACT_DIR set (the default
lives under $XDG_DATA_HOME), and the job must finish with its result readable.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from svc_helpers import MLP_SCORE, REPO, expect_problem, served, with_field


def _settings_in(cwd: Path, env: dict[str, str]) -> str:
    code = "from initscore.server.settings import Settings; s = Settings(); print(s.artifact_dir); print(','.join(s.allowed_roots))"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_settings_paths_are_absolute_and_independent_of_cwd(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(PYTHONPATH=str(REPO), XDG_DATA_HOME=str(tmp_path / "xdg"))
    default_a, default_b = _settings_in(a, env), _settings_in(b, env)
    assert default_a == default_b and default_a.splitlines()[0] == str(tmp_path / "xdg" / "initscore" / "artifacts")
    (a / "data").mkdir()
    env.update(INITSCORE_ARTIFACT_DIR="store", INITSCORE_ALLOWED_ROOTS="data")
    art, roots = _settings_in(a, env).splitlines()
    assert art == str(a / "store") and roots == str(a / "data")  # relative settings resolve once, at start-up


def test_relative_and_missing_data_roots(queued, tmp_path: Path) -> None:
    settings, backend, tc = queued()
    data = Path(settings.allowed_roots[0])
    (data / "sub").mkdir()
    ref = {"kind": "imagefolder", "batch_size": 4}
    missing_inside = tc.post("/v1/jobs", json=with_field("data", {**ref, "root": str(data / "nope")}))
    msg = expect_problem(missing_inside, 422)["errors"][0]["msg"]
    assert "does not exist" in msg and "outside" not in msg, msg
    outside = tc.post("/v1/jobs", json=with_field("data", {**ref, "root": "/usr/share"}))
    assert "outside the allowed" in expect_problem(outside, 422)["errors"][0]["msg"]
    # a relative root is looked up under the allowed roots, never against the API's working directory
    rel_missing = tc.post("/v1/jobs", json=with_field("data", {**ref, "root": "nope"}))
    msg = expect_problem(rel_missing, 422)["errors"][0]["msg"]
    assert "does not exist" in msg and "outside" not in msg and str(data) not in msg, msg
    rel_escape = tc.post("/v1/jobs", json=with_field("data", {**ref, "root": "../.."}))
    assert "outside the allowed" in expect_problem(rel_escape, 422)["errors"][0]["msg"]


def test_queued_quickstart_from_two_directories(tmp_path: Path, redis_server, redis_conn) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), XDG_DATA_HOME=str(tmp_path / "xdg"),
               INITSCORE_REDIS_URL=redis_server.url, INITSCORE_ALLOWED_ROOTS=str(tmp_path))
    api_dir, worker_dir = tmp_path / "api-cwd", tmp_path / "worker-cwd"
    api_dir.mkdir(), worker_dir.mkdir()
    deadline = time.time() + 90
    with served(env, api_cwd=api_dir, worker_cwd=worker_dir, worker_args=("--queues", "initscore-score")) as url:
        job = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE).json()
        got = httpx.get(f"{url}/v1/jobs/{job['id']}", params={"wait": 30}, timeout=40).json()
        while got["status"] not in ("finished", "failed"):
            assert time.time() < deadline + 60, got
            got = httpx.get(f"{url}/v1/jobs/{job['id']}", params={"wait": 30}, timeout=40).json()
        assert got["status"] == "finished" and got["error"] is None and got["result"] is not None, got
        assert not (api_dir / "artifacts").exists() and not (worker_dir / "artifacts").exists()
        assert list((tmp_path / "xdg" / "initscore" / "artifacts" / "objects").rglob("*"))
