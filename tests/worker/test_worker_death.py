"""A worker SIGKILLed mid-run: the job is re-queued once (then runs to the end), or fails with the reason.

Real processes: a `python -m worker.main` subprocess on the real Redis runs a
rectify job; the test kills it with SIGKILL once the job has published progress,
then runs the abandoned-job sweep (`initscore.server.queue.reap`) as the API does.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from svc_helpers import MLP_RECTIFY, REPO, run_worker_burst

LONG_RECTIFY = {**MLP_RECTIFY, "options": {"iters": 150, "heldout_batches": 1}}


def _start_worker(settings) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               INITSCORE_HEARTBEAT_TTL=str(settings.heartbeat_ttl), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "worker.main", "--queues", "initscore-rectify"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_mid_run(tc, job_id: str, proc: subprocess.Popen) -> dict:
    deadline = time.time() + 60
    seen = None
    while time.time() < deadline:
        seen = tc.get(f"/v1/jobs/{job_id}").json()
        p = seen.get("progress") or {}
        if seen["status"] == "running" and (p.get("done") or 0) >= 3:
            break
        assert proc.poll() is None, "worker exited early"
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"job never showed progress: {seen}")
    assert 0 < seen["progress"]["fraction"] < 1 and "gc" in seen["progress"]["metrics"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return seen


def _reap_until(backend, settings, job_id: str, timeout: float = 15.0) -> list:
    from initscore.server.queue import reap

    deadline = time.time() + timeout
    while time.time() < deadline:
        acts = [a for a in reap(backend, settings) if a[0] == job_id]
        if acts:
            return acts
        time.sleep(0.2)
    pytest.fail("the sweep never noticed the dead worker")


def test_killed_worker_job_is_requeued_then_finishes(queued) -> None:
    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    job = tc.post("/v1/jobs", json=LONG_RECTIFY).json()
    proc = _start_worker(settings)
    _kill_mid_run(tc, job["id"], proc)
    assert tc.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"  # nothing noticed yet
    assert _reap_until(backend, settings, job["id"]) == [(job["id"], "requeued")]
    rec = tc.get(f"/v1/jobs/{job['id']}").json()
    assert rec["status"] == "queued" and rec["attempt"] == 2
    assert any("stopped heartbeating during attempt 1" in e and "re-queued as attempt 2" in e for e in rec["events"])
    run_worker_burst(backend, settings, ("initscore-rectify",))
    done = tc.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "finished" and done["attempt"] == 2, done
    assert len(done["result"]["history"]) == 150
    assert tc.get(f"/v1/jobs/{job['id']}/weights").status_code == 200


def test_killed_worker_job_fails_with_reason_at_max_attempts(queued) -> None:
    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=1)
    job = tc.post("/v1/jobs", json=LONG_RECTIFY).json()
    proc = _start_worker(settings)
    _kill_mid_run(tc, job["id"], proc)
    assert _reap_until(backend, settings, job["id"]) == [(job["id"], "failed")]
    rec = tc.get(f"/v1/jobs/{job['id']}").json()
    assert rec["status"] == "failed" and rec["error"]["type"] == "worker-died"
    assert "died" in rec["error"]["detail"] and any("not re-queued" in e for e in rec["events"])
    # the durable copy says the same (a Redis restart cannot resurrect it as running)
    doc = backend.store.get_ref("jobs", job["id"])
    assert doc["status"] == "failed" and doc["error"]["type"] == "worker-died"
