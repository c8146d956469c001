"""`initscore serve --processes 2`: two real uvicorn worker processes on one port and a real Redis; whichever
process a connection lands on, a job submitted through another is found, and an idempotent retry replays it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from svc_helpers import MLP_SCORE, REPO, child_processes, free_port


def test_two_api_processes_share_every_state(tmp_path: Path, redis_server, redis_conn) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=redis_server.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"))
    srv = subprocess.Popen([sys.executable, "-m", "initscore", "serve", "--processes", "2", "--port", str(port)], cwd=REPO,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200 and \
                        sum("spawn_main" in c for _, _, c in child_processes(srv.pid)) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert srv.poll() is None and time.time() < deadline, "the API did not start with two processes"
            time.sleep(0.2)
        first = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k"})
        assert first.status_code == 202, first.text
        job_id = first.json()["id"]
        for _ in range(30):  # a new connection each time: the kernel spreads them over both processes
            got = httpx.get(f"{url}/v1/jobs/{job_id}")
            assert got.status_code == 200 and got.json()["id"] == job_id, got.text
        for _ in range(6):
            again = httpx.post(f"{url}/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k"})
            assert again.status_code == 202 and again.json()["id"] == job_id and again.headers["idempotent-replayed"] == "true"
        listed = httpx.get(f"{url}/v1/jobs").json()["items"]
        assert [j["id"] for j in listed] == [job_id]
    finally:
        srv.terminate()
        srv.wait(timeout=30)


def test_processes_need_the_queued_service(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), INITSCORE_ARTIFACT_DIR=str(tmp_path / "a"))
    r = subprocess.run([sys.executable, "-m", "initscore", "serve", "--inline", "--processes", "2"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "--processes" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
