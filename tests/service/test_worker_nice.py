"""A started worker runs at the CPU niceness of INITSCORE_WORKER_NICE (default 10), so that the API, at its own
niceness, gets the CPU first when a burst of polls arrives while a job computes.

Real processes: ``python -m worker.main`` on a real redis-server; the niceness is read from the kernel
(``os.getpriority`` of the worker's pid) once the worker has beaten ``initscore:workers``. The job runs in
that same process (RQ SimpleWorker), so its niceness is the job's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from svc_helpers import MLP_SCORE, REPO


def _worker(settings, nice: str | None, start_nice: int = 0) -> subprocess.Popen:
    """The worker's stderr goes to a file next to the artifact store (``p.log``): a pipe nobody reads could fill."""
    env = {k: v for k, v in os.environ.items() if k != "INITSCORE_WORKER_NICE"}
    env.update(OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url, INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir),
               INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots), PYTHONPATH=str(REPO))
    if nice is not None:
        env["INITSCORE_WORKER_NICE"] = nice
    log = Path(settings.artifact_dir).parent / f"worker-{time.time_ns()}.log"
    with log.open("wb") as f:
        p = subprocess.Popen([sys.executable, "-m", "worker.main", "--no-preload", "--queues", "initscore-score"], cwd=REPO,
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=f,
                             preexec_fn=(lambda: os.nice(start_nice)) if start_nice else None)
    p.log = log  # type: ignore[attr-defined]
    return p


def _stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=20)


def _niceness_once_live(backend, p: subprocess.Popen) -> int:
    deadline = time.time() + 90
    while not any(n.endswith(f".{p.pid}") for n in backend.index.live_workers(30.0)):
        assert p.poll() is None, p.log.read_text()[-2000:]
        assert time.time() < deadline, "the worker never beat initscore:workers"
        time.sleep(0.2)
    return os.getpriority(os.PRIO_PROCESS, p.pid)


def test_worker_runs_at_the_configured_niceness_and_still_runs_jobs(queued) -> None:
    settings, backend, tc = queued()
    p = _worker(settings, "7")
    try:
        assert os.getpriority(os.PRIO_PROCESS, 0) < 7  # this test process is not what is measured
        assert _niceness_once_live(backend, p) == 7
        job = tc.post("/v1/jobs", json=MLP_SCORE).json()
        t = time.time()
        while (v := tc.get(f"/v1/jobs/{job['id']}").json())["status"] != "finished":
            assert v["status"] in ("queued", "running") and time.time() - t < 90, v
            time.sleep(0.2)
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == 7
    finally:
        _stop(p)


def test_default_niceness_is_10_and_a_nicer_start_is_kept(queued) -> None:
    settings, backend, _ = queued()
    a = _worker(settings, None)
    b = _worker(settings, "5", start_nice=12)  # already nicer than asked: never made less nice
    try:
        assert _niceness_once_live(backend, a) == 10
        assert _niceness_once_live(backend, b) == 12
    finally:
        _stop(a)
        _stop(b)


def test_bad_niceness_is_one_error_line_and_exit_2(queued) -> None:
    settings, _, _ = queued()
    p = _worker(settings, "25")
    try:
        assert p.wait(timeout=60) == 2
        lines = p.log.read_text().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: INITSCORE_WORKER_NICE:"), lines
    finally:
        _stop(p)
