"""GET /v1/jobs/{id} through uvicorn (the lifespan runs, so records are read with the asyncio Redis client on
the loop): every state, another key's job, unknown and malformed ids, a record only in the store."""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from svc_helpers import MLP_SCORE, REPO, expect_problem, served
from service.deps import hash_key


def test_get_job_on_the_event_loop_path(tmp_path: Path, redis_server, redis_conn) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=redis_server.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"), INITSCORE_ALLOWED_ROOTS=str(tmp_path),
               INITSCORE_API_KEYS=f"{hash_key('key-a')},{hash_key('key-b')}")
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    with served(env, worker_args=("--no-preload", "--queues", "initscore-score")) as url:
        job = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE, headers=a).json()
        first = httpx.get(f"{url}/v1/jobs/{job['id']}", headers=a)
        assert first.status_code == 200 and first.json()["status"] in ("queued", "running", "finished"), first.text
        deadline = time.time() + 120
        while (got := httpx.get(f"{url}/v1/jobs/{job['id']}", params={"wait": 20}, headers=a, timeout=30).json())["status"] != "finished":
            assert got["status"] in ("queued", "running") and time.time() < deadline, got
        assert got["result"]["kind"] == "score" and got["progress"] == {"fraction": 1.0}, got
        assert expect_problem(httpx.get(f"{url}/v1/jobs/{job['id']}", headers=b), 404)["type"].endswith(":job-not-found")
        assert expect_problem(httpx.get(f"{url}/v1/jobs/{job['id']}"), 401)
        for bad in ("j_" + "0" * 32, "nope", "j_" + "G" * 32):
            assert expect_problem(httpx.get(f"{url}/v1/jobs/{bad}", headers=a), 404)["type"].endswith(":job-not-found")
        redis_conn.delete(f"initscore:job:{job['id']}")  # the index lost it: the store's durable copy answers
        again = httpx.get(f"{url}/v1/jobs/{job['id']}", headers=a).json()
        assert again["status"] == "finished" and again["result"] == got["result"], again


def test_get_job_on_the_event_loop_path_while_redis_is_away(tmp_path: Path) -> None:
    from svc_helpers import RedisServer

    srv = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=srv.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"))
    try:
        with served(env, worker_args=("--no-preload", "--queues", "initscore-rectify")) as url:
            job = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE).json()  # a score job: no worker takes it
            assert httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"] == "queued"
            srv.stop()
            down = expect_problem(httpx.get(f"{url}/v1/jobs/{job['id']}"), 503)
            assert down["type"].endswith(":queue-unavailable") and down.get("instance") == f"/v1/jobs/{job['id']}", down
            srv = RedisServer(srv.workdir, port=srv.port, appendonly=True).start()
            back = httpx.get(f"{url}/v1/jobs/{job['id']}")  # the same client reconnects: no API restart
            assert back.status_code == 200 and back.json()["status"] == "queued", back.text
    finally:
        srv.stop()
