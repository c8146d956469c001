"""A worker SIGKILLed alone (as the OOM killer does) must leave nothing that can swallow the next job.

RQ's scheduler runs in a forked child of the worker that holds copies of the worker's
Redis sockets; after a SIGKILL of the worker alone that child lived on, Redis still
saw the dead worker's blocking BLPOP and handed it the next job, which then sat in no
queue until a reaper noticed. Real processes: two `python -m worker.main`, the real
Redis, no reaper running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from svc_helpers import MLP_SCORE, REPO


def _worker(settings) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "worker.main", "--no-preload", "--queues", "initscore-score"], cwd=REPO,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_next_job_runs_after_a_worker_is_sigkilled(queued) -> None:
    settings, backend, tc = queued()
    a = _worker(settings)
    b = None
    try:
        deadline = time.time() + 90
        while len(backend.index.live_workers(30.0)) < 1:
            assert a.poll() is None and time.time() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # A is blocked in its dequeue
        os.kill(a.pid, signal.SIGKILL)  # the worker process only, not its process group
        a.wait(timeout=10)
        b = _worker(settings)
        while not any(n.endswith(f".{b.pid}") for n in backend.index.live_workers(30.0)):
            assert b.poll() is None and time.time() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # B is blocked in its dequeue too
        job = tc.post("/v1/jobs", json=MLP_SCORE).json()
        t = time.time()
        while (v := tc.get(f"/v1/jobs/{job['id']}").json())["status"] != "finished":
            assert time.time() - t < 60, f"the job was not run by the live worker: {v['status']}, queue depth {backend.queue_depths()}"
            time.sleep(0.2)
    finally:
        for p in (a, b):
            if p is not None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=20)  # until it has exited, its blocked dequeue can take the next test's job
