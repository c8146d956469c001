"""Redis SHUTDOWN/restart for 8 s while every worker is busy, N times in a row; then /readyz after the workers die.

Real parts: a private redis-server with append-only persistence, `uvicorn --factory
service.app:create_app` (its reaper thread runs) and two `python -m worker.main`
processes. Each round submits one rectify job per worker, waits until every worker is
busy, shuts Redis down (SHUTDOWN flushes the AOF), waits --outage seconds and starts
it again on the same port and directory. At the end every job must be finished,
once (attempt 1, one "started" event), with no worker exit; then both workers are
SIGKILLed and the time until /readyz answers 503 is measured.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/redis_fault.py [--rounds 10]

Targets (issue 23): 0 worker exits, 0 jobs lost or run twice, readyz not-ready < 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    from redis import Redis

    p = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "yes", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if Redis(port=port, socket_connect_timeout=0.2).ping():
                return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit("error: redis-server did not start")


def shutdown_redis(port: int, proc: subprocess.Popen) -> None:
    from redis import Redis

    try:
        Redis(port=port).shutdown()
    except Exception:
        pass
    proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--outage", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iters", type=int, default=400, help="rectify iterations per job (long enough to span an outage)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="initscore-fault-"))
    rport, aport = free_port(), free_port()
    redis = start_redis(rport, tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=f"redis://127.0.0.1:{rport}/0",
               INITSCORE_ARTIFACT_DIR=str(tmp / "artifacts"), INITSCORE_REUSE_RESULTS="false", INITSCORE_WORKER_BEAT_WINDOW="20")
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(aport),
                            "--log-level", "warning"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    logs = [tmp / f"worker{i}.log" for i in range(a.workers)]
    workers = [subprocess.Popen([sys.executable, "-m", "worker.main", "--queues", "initscore-rectify"], cwd=REPO, env=env,
                                start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT) for log in logs]
    url = f"http://127.0.0.1:{aport}"
    c = httpx.Client(base_url=url, timeout=10)
    ids: list[str] = []
    out: dict = {"rounds": a.rounds, "outage_s": a.outage, "workers": a.workers}
    try:
        deadline = time.time() + 120
        while True:
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("error: the stack did not become ready")
            time.sleep(0.3)
        model = {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 3, "num_classes": 4}}
        for r in range(a.rounds):
            new = []
            for w in range(a.workers):
                req = {"kind": "rectify", "model": model,
                       "data": {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8, "seed": 1000 * r + w, "limit": 64},
                       "options": {"iters": a.iters, "heldout_batches": 1}}
                new.append(c.post("/v1/jobs", json=req).json()["id"])
            ids += new
            t = time.time()
            while sum(c.get(f"/v1/jobs/{j}").json()["status"] == "running" for j in ids) < a.workers:  # every worker busy
                if time.time() - t > 300:
                    raise SystemExit(f"error: round {r}: the workers never got busy")
                time.sleep(0.1)
            shutdown_redis(rport, redis)
            time.sleep(a.outage)
            redis = start_redis(rport, tmp)
            print(f"round {r + 1}/{a.rounds}: Redis was down {a.outage:.0f} s with {a.workers} busy workers", flush=True)
        t = time.time()
        views = []
        for j in ids:
            while (v := c.get(f"/v1/jobs/{j}", params={"wait": 10}).json())["status"] not in ("finished", "failed", "cancelled"):
                if time.time() - t > 900:
                    break
            views.append(v)
        exits = sum(w.poll() is not None for w in workers)
        out.update(jobs=len(ids), finished=sum(v["status"] == "finished" for v in views),
                   run_twice=sum(v["attempt"] > 1 or sum("started" in e for e in v["events"]) > 1 for v in views),
                   worker_exits=exits, quitting_lines=sum(log.read_text().count("quitting") for log in logs))
        out["lost"] = out["jobs"] - out["finished"]
        for w in workers:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(timeout=10)
        died = time.time()
        while c.get("/readyz").status_code == 200 and time.time() - died < 300:
            time.sleep(0.2)
        out["readyz_not_ready_after_s"] = round(time.time() - died, 1)
        print(json.dumps(out))
        ok = out["worker_exits"] == 0 and out["lost"] == 0 and out["run_twice"] == 0 and out["readyz_not_ready_after_s"] < 60
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1
    finally:
        c.close()
        for w in workers:
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        api.terminate()
        api.wait(timeout=15)
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
