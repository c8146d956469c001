"""Soak: mixed jobs from concurrent clients against the queued service, with random worker SIGKILLs.

Real processes: a private ``redis-server --appendonly yes``, the API under uvicorn and
2 ``worker.main`` subprocesses (heartbeat 3 s, reaper every 1 s, 2 attempts). `--clients`
threads submit `--jobs` requests: score, batch, rectify (few iterations), invalid
bodies (must be 4xx), cancelled rectify jobs, and Idempotency-Key submissions that are
re-sent (must map to ONE job). A killer thread SIGKILLs a random worker `--kills`
times and starts a replacement. At the end it prints, from the API's own records:
accepted, finished, failed (by reason), cancelled, lost (accepted without a final
state before `--timeout`: must be 0), invalid answered 4xx, duplicated executions of
idempotent requests (must be 0), an in-process recomputation of a sample of results
(``initscore.jobs.run_job``, equal within 1e-6) and the RSS of API and workers.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/soak.py --jobs 500
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MLP = {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 2, "num_classes": 4}}
DATA = {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8}
FINAL = {"finished", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_plan(n: int, seed: int) -> list[dict[str, Any]]:
    """The job mix: (what, body, extra) per job, deterministic for a seed."""
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        u = rng.random()
        data = {**DATA, "seed": i}
        hidden = rng.choice([8, 16, 24])
        model = {"arch": "mlp", "args": {**MLP["args"], "hidden": hidden}}
        if u < 0.35:
            plan.append({"what": "score", "body": {"kind": "score", "model": model, "data": data}})
        elif u < 0.50:
            plan.append({"what": "batch", "body": {"kind": "batch", "models": [model, MLP, {**MLP, "args": {**MLP["args"], "depth": 3}}],
                                                    "data": data}})
        elif u < 0.65:
            plan.append({"what": "rectify", "body": {"kind": "rectify", "model": model, "data": {**data, "limit": 64},
                                                      "options": {"iters": rng.randint(3, 15), "heldout_batches": 1}}})
        elif u < 0.75:
            bad = rng.choice([
                {"kind": "score", "model": {"arch": "resnet9000"}, "data": data},
                {"kind": "score", "model": model, "data": {**data, "batch_size": 1}},
                {"kind": "rectify", "model": model, "data": data, "options": {"iters": -3}},
                {"kind": "score", "model": {"arch": "mlp", "args": {"hidden": 10**9}}, "data": data},
                "{\"kind\": \"score\",",  # malformed JSON
            ])
            plan.append({"what": "invalid", "body": bad})
        elif u < 0.85:
            plan.append({"what": "cancel", "body": {"kind": "rectify", "model": model, "data": {**data, "limit": 64},
                                                     "options": {"iters": 300, "heldout_batches": 1}}})
        else:
            plan.append({"what": "idempotent", "key": f"soak-{seed}-{i}",
                         "body": {"kind": "score", "model": model, "data": data}})
    return plan


class Service:
    def __init__(self, tmp: Path, threads: str) -> None:
        self.tmp = tmp
        self.rport, self.aport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.aport}"
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=f"redis://127.0.0.1:{self.rport}/0",
                        INITSCORE_ARTIFACT_DIR=str(tmp / "artifacts"), INITSCORE_ALLOWED_ROOTS=str(tmp / "data"),
                        INITSCORE_HEARTBEAT_TTL="3", INITSCORE_REAPER_INTERVAL="1", INITSCORE_MAX_ATTEMPTS="2",
                        OMP_NUM_THREADS=threads)
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.rport), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "yes", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        self.api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(self.aport),
                                     "--log-level", "warning"], cwd=REPO, env=self.env, stderr=open(tmp / "api.log", "w"))
        self.workers: list[subprocess.Popen] = [self._worker(k) for k in range(2)]
        self.lock = threading.Lock()

    def _worker(self, k: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "worker.main", "--name", f"soak-{k}-{time.time_ns()}"], cwd=REPO, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"worker{k}.log", "a"))

    def kill_and_restart(self, k: int) -> None:
        with self.lock:
            os.kill(self.workers[k].pid, signal.SIGKILL)
            self.workers[k].wait(timeout=10)
            self.workers[k] = self._worker(k)

    def stop(self) -> None:
        for p in [*self.workers, self.api, self.redis]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.api, self.redis]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def close(a: Any, b: Any, tol: float, path: str = "") -> list[str]:
    """Paths where two JSON results differ (floats within `tol`, timing fields ignored)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            if "seconds" in k or k.endswith("_sha256") or k in ("device",):
                continue
            out += close(a.get(k), b.get(k), tol, f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [d for x, y, i in zip(a, b, range(len(a))) for d in close(x, y, tol, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return [path]
        fa, fb = float(a), float(b)
        if math.isnan(fa) and math.isnan(fb):
            return []
        return [] if abs(fa - fb) <= tol * max(1.0, abs(fa), abs(fb)) else [f"{path}: {fa} vs {fb}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--kills", type=int, default=3, help="worker SIGKILLs (each followed by a restart)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for all accepted jobs to reach a final state")
    ap.add_argument("--sample", type=int, default=12, help="finished results recomputed in-process")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    threads = os.environ.setdefault("OMP_NUM_THREADS", "1")

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="initscore-soak-"))
    svc = Service(tmp, threads)
    t_start = time.time()
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{svc.url}/readyz", timeout=2).status_code == 200 and \
                        httpx.get(f"{svc.url}/readyz", timeout=2).json().get("workers", {}) is not None:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.time() > deadline:
                raise SystemExit("service did not become ready (see %s)" % tmp)
            time.sleep(0.3)
        time.sleep(2.0)  # both workers preloaded
        rss_start = {"api": rss_mib(svc.api.pid), **{f"worker{k}": rss_mib(w.pid) for k, w in enumerate(svc.workers)}}

        plan = make_plan(a.jobs, a.seed)
        http = httpx.Client(base_url=svc.url, timeout=60, limits=httpx.Limits(max_connections=a.clients + 4))
        outcomes: list[dict[str, Any]] = [{} for _ in plan]

        def send(method: str, url: str, **kw: Any) -> httpx.Response:
            for attempt in range(20):
                try:
                    r = http.request(method, url, **kw)
                    if r.status_code not in (502, 503, 504):
                        return r
                except httpx.TransportError:
                    pass
                time.sleep(0.2 * (attempt + 1))
            return http.request(method, url, **kw)

        def submit(i: int) -> None:
            item, out = plan[i], outcomes[i]
            body = item["body"]
            if item["what"] == "invalid" and isinstance(body, str):
                r = send("POST", "/v1/jobs", content=body.encode(), headers={"content-type": "application/json"})
            elif item["what"] == "idempotent":
                h = {"Idempotency-Key": item["key"]}
                rs = [send("POST", "/v1/jobs?reuse=false", json=body, headers=h) for _ in range(3)]
                out["ids"] = [x.json().get("id") for x in rs if x.status_code == 202]
                out["replayed"] = sum(x.headers.get("idempotent-replayed") == "true" for x in rs)
                r = rs[0]
            else:
                r = send("POST", "/v1/jobs?reuse=false", json=body)
            out["status_code"] = r.status_code
            if r.status_code == 202:
                out["id"] = r.json()["id"]
                if item["what"] == "cancel":
                    time.sleep(random.Random(i).random() * 0.5)
                    out["cancel_code"] = send("DELETE", f"/v1/jobs/{out['id']}").status_code

        kill_log: list[str] = []
        stop_killer = threading.Event()

        def killer() -> None:
            rng = random.Random(a.seed + 1)
            for _ in range(a.kills):
                if stop_killer.wait(rng.uniform(1.5, 4.0)):
                    return
                k = rng.randrange(len(svc.workers))
                svc.kill_and_restart(k)
                kill_log.append(f"t={time.time() - t_start:.1f}s SIGKILL worker{k}")

        kt = threading.Thread(target=killer, daemon=True)
        kt.start()
        t0 = time.time()
        with ThreadPoolExecutor(a.clients) as pool:
            list(pool.map(submit, range(len(plan))))
        t_submit = time.time() - t0

        accepted = {o["id"]: plan[i] for i, o in enumerate(outcomes) if "id" in o}
        final: dict[str, dict[str, Any]] = {}
        end = time.time() + a.timeout
        while len(final) < len(accepted) and time.time() < end:
            for jid in [j for j in accepted if j not in final]:
                v = send("GET", f"/v1/jobs/{jid}").json()
                if v.get("status") in FINAL:
                    final[jid] = v
            time.sleep(0.5)
        t_all = time.time() - t0
        stop_killer.set()
        kt.join(timeout=1)
        rss_end = {"api": rss_mib(svc.api.pid), **{f"worker{k}": rss_mib(w.pid) for k, w in enumerate(svc.workers)}}

        status = Counter(v["status"] for v in final.values())
        reasons = Counter((v.get("error") or {}).get("type", "?") for v in final.values() if v["status"] == "failed")
        lost = sorted(set(accepted) - set(final))
        invalid = [o for i, o in enumerate(outcomes) if plan[i]["what"] == "invalid"]
        invalid_4xx = sum(400 <= o["status_code"] < 500 for o in invalid)
        idem = [o for i, o in enumerate(outcomes) if plan[i]["what"] == "idempotent"]
        dup = sum(len(set(o.get("ids", []))) != 1 for o in idem)
        replayed = sum(o.get("replayed", 0) for o in idem)
        reruns = sum(1 for v in final.values() if v.get("attempt", 1) > 1)
        cancels = [o for i, o in enumerate(outcomes) if plan[i]["what"] == "cancel" and "id" in o]
        five = sum(o.get("status_code", 0) >= 500 for o in outcomes)

        # recomputation of a sample of finished results, in this process
        from initscore.jobs import run_job

        rng = random.Random(a.seed + 2)
        fin = [j for j, v in final.items() if v["status"] == "finished" and accepted[j]["what"] in ("score", "batch", "rectify", "idempotent")]
        sample = rng.sample(fin, min(a.sample, len(fin)))
        mismatches = []
        for jid in sample:
            res, _, _ = run_job(accepted[jid]["body"])
            diff = close(json.loads(res.model_dump_json()), final[jid]["result"], 1e-6)
            if diff:
                mismatches.append((jid, accepted[jid]["what"], diff[:3]))

        print(f"soak: {a.jobs} requests from {a.clients} client threads, 2 workers, OMP_NUM_THREADS={threads}")
        print(f"  mix: {dict(Counter(p['what'] for p in plan))}")
        print(f"  worker kills: {len(kill_log)} ({'; '.join(kill_log)})")
        print(f"  submit phase {t_submit:.1f} s, all final after {t_all:.1f} s")
        print(f"  accepted: {len(accepted)}  finished: {status['finished']}  failed: {status['failed']} {dict(reasons)}  "
              f"cancelled: {status['cancelled']}  lost: {len(lost)}")
        print(f"  re-run after a worker kill (attempt > 1): {reruns}")
        print(f"  cancel requests: {len(cancels)} (200 at once: {sum(o.get('cancel_code') == 200 for o in cancels)}, "
              f"202 while running: {sum(o.get('cancel_code') == 202 for o in cancels)}, 409 already final: "
              f"{sum(o.get('cancel_code') == 409 for o in cancels)})")
        print(f"  invalid requests: {len(invalid)}, answered 4xx: {invalid_4xx}; 5xx answers to submissions: {five}")
        print(f"  idempotent requests: {len(idem)} x 3 sends, replayed answers: {replayed}, keys mapped to >1 job: {dup}")
        print(f"  recomputed in-process: {len(sample)}, mismatches (tol 1e-6): {len(mismatches)} {mismatches[:2]}")
        print("  RSS MiB start -> end: " + ", ".join(
            f"{k} {rss_start.get(k) or 0:.0f} -> {rss_end.get(k) or 0:.0f}" for k in rss_end)
            + " (workers killed and restarted are fresh processes)")
        ok = not lost and dup == 0 and not mismatches and invalid_4xx == len(invalid) and five == 0
        print("  RESULT:", "OK" if ok else "FAILED", f"(logs in {tmp})")
        if not ok:
            print("  lost ids:", lost[:10])
            sys.exit(1)
    finally:
        svc.stop()


if __name__ == "__main__":
    main()
