"""/readyz tells the truth, and a failed submit does not burn its Idempotency-Key.

Real parts: a `python -m worker.main` process on the real Redis (SIGKILLed to die
like an OOM-killed worker), a uvicorn API process whose file-size limit is 0
(RLIMIT_FSIZE: every write of a byte to a regular file fails with EFBIG, as on a
full disk, while creating an empty file still works), and an artifact directory
whose parent is a file (every write fails) that is then repaired.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from svc_helpers import MLP_SCORE, REPO, expect_problem, free_port


def _worker(settings, window: float) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               INITSCORE_WORKER_BEAT_WINDOW=str(window), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "worker.main", "--no-preload"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_readyz_turns_not_ready_when_the_last_worker_dies(queued) -> None:
    settings, backend, tc = queued(worker_beat_window=1.0)
    body = expect_problem(tc.get("/readyz"), 503)
    assert body["type"].endswith(":no-worker") and body["checks"]["workers"].startswith("failed")
    assert body["checks"]["redis"] == "ok" and body["checks"]["store"] == "ok"
    proc = _worker(settings, 1.0)
    try:
        deadline = time.time() + 60
        while (r := tc.get("/readyz")).status_code != 200:
            assert proc.poll() is None and time.time() < deadline, r.text
            time.sleep(0.1)
        ok = r.json()
        assert ok["status"] == "ready" and ok["checks"] == {"redis": "ok", "store": "ok", "workers": ok["checks"]["workers"]}
        assert ok["checks"]["workers"].startswith("ok") and len(ok["workers"]) == 1
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its RQ scheduler child (which holds copies of its sockets)
        proc.wait(timeout=10)
        died = time.time()
        while tc.get("/readyz").status_code == 200:
            assert time.time() - died < 10, "readyz still says ready 10 s after the only worker died"
            time.sleep(0.1)
        body = expect_problem(tc.get("/readyz"), 503)
        assert body["type"].endswith(":no-worker") and "worker" in body["detail"]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)


def _limit_file_size() -> None:  # runs in the API child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_readyz_and_submit_on_a_full_store(queued, tmp_path: Path) -> None:
    settings, backend, _ = queued()
    backend.index.worker_beat("w-test")  # a live worker: only the store can make it unready
    env = dict(os.environ, PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "full"), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots))
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(port),
                            "--log-level", "warning"], cwd=REPO, env=env, preexec_fn=_limit_file_size,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = httpx.get(f"{url}/readyz")
                break
            except httpx.HTTPError:
                assert api.poll() is None and time.time() < deadline
                time.sleep(0.2)
        body = expect_problem(r, 503)
        assert body["type"].endswith(":store-unavailable") and body["checks"]["store"].startswith("failed"), body
        assert body["checks"]["redis"] == "ok" and body["checks"]["workers"].startswith("ok")
        sub = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k1"})
        assert expect_problem(sub, 503)["type"].endswith(":store-unavailable")
        again = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 503, again.text  # the same fault again, not 409 "still being accepted"
    finally:
        api.terminate()
        api.wait(timeout=10)
    assert backend.queue_depths()["initscore-score"] == 0


def test_failed_submit_releases_its_idempotency_key(queued, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")  # the artifact directory's parent is a file: every write fails
    settings, backend, tc = queued(artifact_dir=blocker / "artifacts")
    headers = {"Idempotency-Key": "retry-me"}
    expect_problem(tc.post("/v1/jobs", json=MLP_SCORE, headers=headers), 503)
    expect_problem(tc.post("/v1/jobs", json=MLP_SCORE, headers=headers), 503)
    blocker.unlink()
    blocker.mkdir()  # the fault is repaired
    ok = tc.post("/v1/jobs", json=MLP_SCORE, headers=headers)
    assert ok.status_code == 202 and "idempotent-replayed" not in ok.headers, ok.text
    replay = tc.post("/v1/jobs", json=MLP_SCORE, headers=headers)
    assert replay.status_code == 202 and replay.json()["id"] == ok.json()["id"] and replay.headers["idempotent-replayed"] == "true"
    assert backend.queue_depths()["initscore-score"] == 1
