"""Redis SHUTDOWN/restart for 8 s while every worker is busy, N times in a row; then /readyz after the workers die.

Real parts: a private redis-server with append-only persistence, `uvicorn --factory
service.app:create_app` (its reaper thread runs) and two `python -m worker.main`
processes. Each round submits one rectify job per worker, waits until every worker is
busy with one of them, shuts Redis down (SHUTDOWN flushes the AOF), waits --outage seconds and starts
it again on the same port and directory. At the end every job must be finished,
once (attempt 1, one "started" event), with no worker exit; then both workers are
SIGKILLed and the time until /readyz answers 503 is measured.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/redis_fault.py [--rounds 10]

Targets (issue 23): 0 worker exits, 0 jobs lost or run twice, readyz not-ready < 60 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import httpx

from _stack import Stack


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--outage", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iters", type=int, default=400, help="rectify iterations per job (long enough to span an outage)")
    a = ap.parse_args()
    stack = Stack(workers=a.workers, worker_args=["--queues", "initscore-rectify"], appendonly=True, worker_logs=True,
                  api_stderr=False, prefix="initscore-fault-",
                  env={"OMP_NUM_THREADS": "1", "INITSCORE_REUSE_RESULTS": "false", "INITSCORE_WORKER_BEAT_WINDOW": "20"})
    ids: list[str] = []
    out: dict = {"rounds": a.rounds, "outage_s": a.outage, "workers": a.workers}
    with stack, httpx.Client(base_url=stack.url, timeout=10) as c:
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
            while True:  # every worker busy with THIS round's job (so the last round's results are recorded)
                states = [c.get(f"/v1/jobs/{j}").json()["status"] for j in new]
                if all(st == "running" for st in states):
                    break
                if any(st in ("finished", "failed", "cancelled") for st in states):
                    raise SystemExit(f"error: round {r}: a job ended before every worker was busy; raise --iters")
                if time.time() - t > 300:
                    raise SystemExit(f"error: round {r}: the workers never got busy")
                time.sleep(0.05)
            stack.shutdown_redis()
            time.sleep(a.outage)
            stack.start_redis()
            print(f"round {r + 1}/{a.rounds}: Redis was down {a.outage:.0f} s with {a.workers} busy workers", flush=True)
        t = time.time()
        views = []
        for j in ids:
            while (v := c.get(f"/v1/jobs/{j}", params={"wait": 10}).json())["status"] not in ("finished", "failed", "cancelled"):
                if time.time() - t > 900:
                    break
            views.append(v)
        exits = sum(w.poll() is not None for w in stack.workers)
        out.update(jobs=len(ids), finished=sum(v["status"] == "finished" for v in views),
                   run_twice=sum(v["attempt"] > 1 or sum("started" in e for e in v["events"]) > 1 for v in views),
                   worker_exits=exits, quitting_lines=sum(log.read_text().count("quitting") for log in stack.log_paths))
        out["lost"] = out["jobs"] - out["finished"]
        for v in views:  # the evidence for any job that did not finish once
            if v["status"] != "finished" or v["attempt"] > 1 or sum("started" in e for e in v["events"]) > 1:
                print(json.dumps({"job": v["id"], "status": v["status"], "attempt": v["attempt"], "events": v["events"]}),
                      flush=True)
        t = time.time()  # measure from a ready service: /readyz must answer 200 before the workers die
        while c.get("/readyz").status_code != 200 and time.time() - t < 120:
            time.sleep(0.2)
        out["ready_before_kill_after_s"] = round(time.time() - t, 1)
        stack.kill_workers()
        died = time.time()
        while c.get("/readyz").status_code == 200 and time.time() - died < 300:
            time.sleep(0.2)
        out["readyz_not_ready_after_s"] = round(time.time() - died, 1)
        print(json.dumps(out))
        ok = out["worker_exits"] == 0 and out["lost"] == 0 and out["run_twice"] == 0 and out["readyz_not_ready_after_s"] < 60
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
