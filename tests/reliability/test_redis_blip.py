"""Redis SHUTDOWN while every worker is busy: workers survive, jobs finish once, the reaper keeps sweeping.

Real parts only: a redis-server with append-only persistence in a temporary
directory, two `python -m worker.main` processes, the app with its reaper thread
running (TestClient as a context manager runs the lifespan). Both workers are made
busy with rectify jobs, then Redis is shut down (SHUTDOWN flushes the AOF) for
several seconds and started again on the same port and directory -- the moment a
running job reports progress, beats its heartbeat and, for the shorter job, tries
to record its result. Before the fix both workers printed "found an unhandled
exception, quitting..." and exited.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svc_helpers import MLP_RECTIFY, REPO, RedisServer, stop_processes


def _seeded(iters: int, seed: int) -> dict:
    return {**MLP_RECTIFY, "data": {**MLP_RECTIFY["data"], "seed": seed}, "options": {"iters": iters, "heldout_batches": 1}}


def _start_worker(settings, log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               INITSCORE_HEARTBEAT_TTL=str(settings.heartbeat_ttl), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "worker.main", "--queues", "initscore-rectify"], cwd=REPO, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _shutdown(srv: RedisServer) -> None:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        Redis.from_url(srv.url).shutdown()
    except RedisConnectionError:
        pass
    assert srv.proc is not None
    srv.proc.wait(timeout=20)


def test_busy_workers_survive_redis_shutdown(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from redis import Redis

    from service.app import create_app
    from initscore.server.queue import RQBackend
    from initscore.server.settings import Settings

    srv = RedisServer(tmp_path / "redis", appendonly=True).start()
    (tmp_path / "data").mkdir()
    st = Settings(redis_url=srv.url, artifact_dir=tmp_path / "artifacts", allowed_roots=[str(tmp_path / "data")],
                  heartbeat_ttl=25.0, reaper_interval=0.5, max_wait_seconds=1.0, reuse_results=False)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers: list[subprocess.Popen] = []
    try:
        conn = Redis.from_url(srv.url, socket_connect_timeout=1, socket_timeout=5)
        with TestClient(create_app(st, RQBackend(st, redis=conn))) as tc:
            # one long job (runs through the outage) and one shorter one (ends while Redis is away)
            ids = [tc.post("/v1/jobs", json=_seeded(iters, seed)).json()["id"] for iters, seed in ((400, 21), (120, 22))]
            workers = [_start_worker(st, log) for log in logs]
            deadline = time.time() + 120
            while True:  # every worker busy: both jobs running and reporting progress
                views = [tc.get(f"/v1/jobs/{j}").json() for j in ids]
                if all(v["status"] == "running" and (v.get("progress") or {}).get("done", 0) >= 2 for v in views):
                    break
                assert all(w.poll() is None for w in workers), "a worker exited before the fault"
                assert time.time() < deadline, f"jobs never ran: {views}"
                time.sleep(0.05)

            _shutdown(srv)
            time.sleep(8.0)
            assert all(w.poll() is None for w in workers), "a worker exited while Redis was away:\n" + \
                "\n".join(log.read_text()[-1500:] for log in logs)
            srv = RedisServer(srv.workdir, port=srv.port, appendonly=True).start()

            deadline = time.time() + 240
            while True:
                views = [tc.get(f"/v1/jobs/{j}").json() for j in ids]
                if all(v["status"] in ("finished", "failed", "cancelled") for v in views):
                    break
                assert all(w.poll() is None for w in workers), "a worker exited after Redis came back:\n" + \
                    "\n".join(log.read_text()[-1500:] for log in logs)
                assert time.time() < deadline, f"jobs never finished: {views}"
                time.sleep(0.2)
            for v in views:
                assert v["status"] == "finished", v
                assert v["attempt"] == 1, v  # ran once: not re-queued, not run twice
                assert sum("started" in e for e in v["events"]) == 1, v["events"]
                assert tc.get(f"/v1/jobs/{v['id']}/weights").status_code == 200
            assert [len(v["result"]["history"]) for v in views] == [400, 120]
            assert all(w.poll() is None for w in workers), "a worker exited"
            out = "".join(log.read_text() for log in logs)
            assert "quitting" not in out, out[-3000:]
            assert "Redis unreachable while" in out, out[-3000:]  # the fault did hit a busy worker
    finally:
        stop_processes(workers)
        srv.stop()
