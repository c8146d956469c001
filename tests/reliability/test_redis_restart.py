"""Redis restarted (append-only on) with finished and queued jobs: nothing finished is lost, queued jobs still run.

A dedicated REAL redis-server (``--appendonly yes``) in a temporary directory is shut
down cleanly (``SHUTDOWN``: the AOF is flushed) and started again on the same port and
directory while the app and its Redis client stay up; the API must serve the old
results byte-for-byte from Redis again, and a burst worker started after the restart
must run the jobs that were queued before it.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, RedisServer, run_worker_burst


def _restart(srv: RedisServer) -> RedisServer:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        Redis.from_url(srv.url).shutdown()  # SAVE-less SHUTDOWN still fsyncs the AOF
    except RedisConnectionError:
        pass
    assert srv.proc is not None
    srv.proc.wait(timeout=20)
    return RedisServer(srv.workdir, port=srv.port, appendonly=True).start()


def _seeded(req: dict, seed: int) -> dict:
    return {**req, "data": {**req["data"], "seed": seed}}


def test_restart_keeps_finished_and_runs_queued(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from redis import Redis

    from service.app import create_app
    from initscore.server.queue import RQBackend
    from initscore.server.settings import Settings

    srv = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        (tmp_path / "data").mkdir()
        st = Settings(redis_url=srv.url, artifact_dir=tmp_path / "artifacts", allowed_roots=[str(tmp_path / "data")],
                      heartbeat_ttl=5.0, reaper_interval=60.0, max_wait_seconds=1.0)
        conn = Redis.from_url(srv.url)
        backend = RQBackend(st, redis=conn)
        tc = TestClient(create_app(st, backend))

        done = [tc.post("/v1/jobs", json=r).json()["id"] for r in (MLP_SCORE, MLP_RECTIFY)]
        run_worker_burst(backend, st)
        before = {j: tc.get(f"/v1/jobs/{j}").json() for j in done}
        assert all(v["status"] == "finished" for v in before.values()), before
        weights = tc.get(f"/v1/jobs/{done[1]}/weights").content

        queued_ids = [tc.post("/v1/jobs", json=r).json()["id"] for r in
                      (_seeded(MLP_SCORE, 11), _seeded(MLP_RECTIFY, 12),
                       {"kind": "batch", "models": [MLP_SCORE["model"]] * 2, "data": _seeded(MLP_SCORE, 13)["data"]})]
        cancelled = tc.post("/v1/jobs", json=_seeded(MLP_SCORE, 14)).json()["id"]
        assert tc.delete(f"/v1/jobs/{cancelled}").status_code == 200
        depths = backend.queue_depths()
        assert sum(depths.values()) == 3
        n_keys = len(conn.keys("initscore:*"))
        time.sleep(1.1)  # appendfsync everysec: let one fsync tick pass too (SHUTDOWN flushes anyway)

        srv = _restart(srv)
        assert list((tmp_path / "redis").rglob("*.aof")), "no append-only file was written"
        assert len(conn.keys("initscore:*")) == n_keys  # the same client reconnects transparently
        assert backend.queue_depths() == depths
        for j in done:
            after = tc.get(f"/v1/jobs/{j}").json()
            assert after["status"] == "finished" and after["result"] == before[j]["result"]
        assert tc.get(f"/v1/jobs/{done[1]}/weights").content == weights
        listed = {i["id"] for i in tc.get("/v1/jobs?limit=50").json()["items"]}
        assert listed == set(done) | set(queued_ids) | {cancelled}
        assert all(tc.get(f"/v1/jobs/{j}").json()["status"] == "queued" for j in queued_ids)

        run_worker_burst(backend, st)
        for j in queued_ids:
            rec = tc.get(f"/v1/jobs/{j}").json()
            assert rec["status"] == "finished", rec
            assert rec["attempt"] == 1  # ran once, not re-queued
        assert tc.get(f"/v1/jobs/{cancelled}").json()["status"] == "cancelled"
        assert sum(backend.queue_depths().values()) == 0
        conn.close()
    finally:
        srv.stop()
