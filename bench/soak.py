"""Soak: mixed jobs from concurrent clients against the queued service, with random worker SIGKILLs.

Real processes (``bench/_stack.Stack``): a private ``redis-server --appendonly yes``, the API under uvicorn and
2 ``worker.main`` subprocesses (heartbeat 3 s, reaper every 1 s, 2 attempts).

Fault phase: `--clients` threads submit `--jobs` requests: score, batch, rectify (few iterations), invalid
bodies (must be 4xx), cancelled rectify jobs, and Idempotency-Key submissions that are
re-sent (must map to ONE job). A killer thread SIGKILLs a random worker `--kills`
times and starts a replacement. At the end it prints, from the API's own records:
accepted, finished, failed (by reason), cancelled, lost (accepted without a final
state before `--timeout`: must be 0), invalid answered 4xx, duplicated executions of
idempotent requests (must be 0), an in-process recomputation of a sample of results
(``initscore.jobs.run_job``, equal within 1e-6) and the RSS of API and workers.

Memory phase (no kills, fresh service): `--memory-clients` closed-loop clients run `--memory-jobs`
small real jobs (resnet20 / NAS-Bench-201 cells / MLP on CIFAR-10 test subsets: score in sample and
batch mode, score with proxies, batch of 4 architectures, rectify with 3-6 iterations) through the API
and the 2 long-lived workers (RQ ``SimpleWorker``: each job runs in the worker process itself, so the
worker process is the one that persists). VmRSS of the API and of each worker is sampled every
`--memory-every` finished jobs; per process the least-squares slope over the second half of the jobs
(after warm-up) must be < 2 MiB per 100 jobs and the growth first -> last checkpoint after warm-up < 5%.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/soak.py            # both phases
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/soak.py --memory-only \
        --memory-jobs 1000 --memory-plot docs/figures/soak_memory.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

MLP = {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 2, "num_classes": 4}}
DATA = {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8}
FINAL = {"finished", "failed", "cancelled"}


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
    """The soak's stack (``bench/_stack.Stack``): Redis with an append-only file, the API (stderr in ``tmp/api.log``)
    and 2 workers (logs in ``tmp/worker{k}.log``); heartbeat 3 s, reaper every 1 s, 2 attempts. ``tmp`` is kept."""

    def __init__(self, threads: str, extra_roots: tuple[str, ...] = (), prefix: str = "initscore-soak-") -> None:
        from _stack import Stack

        self.stack = Stack(workers=2, appendonly=True, worker_logs=True, api_stderr="file", timeout=180.0, prefix=prefix,
                           extra_roots=extra_roots, keep_tmp=True,
                           env={"INITSCORE_HEARTBEAT_TTL": "3", "INITSCORE_REAPER_INTERVAL": "1",
                                "INITSCORE_MAX_ATTEMPTS": "2", "OMP_NUM_THREADS": threads})
        self.tmp = self.stack.tmp
        (self.tmp / "data").mkdir(parents=True, exist_ok=True)
        self.url = self.stack.url
        self.lock = threading.Lock()

    def start(self) -> "Service":
        try:
            self.stack.start()
        except BaseException:
            self.stack.stop(grace=5.0)
            raise
        time.sleep(2.0)  # both workers preloaded
        return self

    @property
    def api(self) -> subprocess.Popen:
        return self.stack.api

    @property
    def redis(self) -> subprocess.Popen:
        return self.stack.redis

    @property
    def workers(self) -> list[subprocess.Popen]:
        return self.stack.workers

    def kill_and_restart(self, k: int) -> None:
        with self.lock:
            self.stack.restart_worker(k, sig=signal.SIGKILL)

    def stop(self) -> None:
        self.stack.stop(grace=10.0)


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


def fault_phase(a: argparse.Namespace, threads: str) -> bool:
    """The fault soak (mixed, invalid, cancelled and idempotent requests; random worker kills).

    Prints its figures; True when every check holds.
    """
    import httpx

    svc = Service(threads).start()
    tmp = svc.tmp
    t_start = time.time()
    try:
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
        return ok
    finally:
        svc.stop()


# ---------------------------------------------------------------- memory phase (no kills)
NB201_CELLS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
]
# the flatness criterion, stated before the run: per process, over the post-warm-up half of the jobs
MAX_SLOPE_MIB_PER_100 = 2.0
MAX_GROWTH_AFTER_WARMUP = 0.05


def memory_plan(n: int, seed: int, cifar_root: str | None) -> list[dict[str, Any]]:
    """A steady mix of small real jobs: score (sample and batch mode), batch of architectures, rectify.

    CIFAR-10 test images (64-image seeded subsets, batch 8) when a local copy exists, else synthetic 3x32x32.
    """
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        if cifar_root:
            data = {"kind": "cifar10", "root": cifar_root, "split": "test", "batch_size": 8, "limit": 64, "seed": i}
        else:
            data = {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 8, "seed": i}
        syn = {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 8, "seed": i}
        r20 = {"arch": "resnet20", "args": {"bn": rng.random() < 0.5}}
        nb = {"arch": "nb201", "args": {"cell": rng.choice(NB201_CELLS), "C": 8, "N": 1}}
        u = rng.random()
        if u < 0.30:
            plan.append({"what": "score-sample", "body": {"kind": "score", "model": r20, "data": data}})
        elif u < 0.45:
            plan.append({"what": "score-batch", "body": {"kind": "score", "model": rng.choice([r20, nb]), "data": syn,
                                                          "options": {"mode": "batch"}}})
        elif u < 0.55:
            plan.append({"what": "score-proxies", "body": {"kind": "score", "model": r20, "data": data,
                                                            "options": {"proxies": ["synflow", "snip", "naswot"]}}})
        elif u < 0.75:
            models = [{"arch": "resnet20"}, {"arch": "resnet20", "args": {"bn": False}}, nb,
                      {"arch": "mlp", "args": {"hidden": rng.choice([32, 64]), "depth": 2}}]
            plan.append({"what": "batch", "body": {"kind": "batch", "models": models, "data": data}})
        else:
            plan.append({"what": "rectify", "body": {"kind": "rectify", "model": r20, "data": data, "init_seed": i,
                                                      "options": {"iters": rng.randint(3, 6), "heldout_batches": 1}}})
    return plan


def lsq_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope dy/dx (0 for fewer than 2 points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def flatness(jobs: list[int], rss: list[float], warmup: int) -> dict[str, Any]:
    """Slope (MiB per 100 jobs) and growth over the checkpoints at or after `warmup` finished jobs, and the verdict."""
    pts = [(j, r) for j, r in zip(jobs, rss) if j >= warmup and r is not None]
    if len(pts) < 2:
        return {"ok": False, "why": "fewer than 2 checkpoints after warm-up", "slope": math.nan, "first": math.nan,
                "last": math.nan, "growth": math.nan}
    slope = lsq_slope([j for j, _ in pts], [r for _, r in pts]) * 100
    first, last = pts[0][1], pts[-1][1]
    growth = (last - first) / first
    ok = slope < MAX_SLOPE_MIB_PER_100 and growth < MAX_GROWTH_AFTER_WARMUP
    return {"ok": ok, "slope": slope, "first": first, "last": last, "growth": growth, "why": ""}


def memory_phase(a: argparse.Namespace, threads: str) -> bool:
    """Kill-free stream of real jobs against the API + 2 long-lived workers; RSS every `--memory-every` finished jobs."""
    import httpx

    from initscore.dataref import default_cifar10_root

    cifar = default_cifar10_root() if a.memory_data == "cifar10" else None
    svc = Service(threads, extra_roots=(cifar,) if cifar else (), prefix="initscore-soakmem-")
    tmp = svc.tmp
    plan = memory_plan(a.memory_jobs, a.seed, cifar)
    warmup = a.memory_jobs // 2
    print(f"memory soak: {a.memory_jobs} jobs, {a.memory_clients} closed-loop clients (submit, wait for the final state, "
          f"submit the next), API + 2 long-lived RQ SimpleWorker processes (each job runs in the worker process, no fork), "
          f"no kills, OMP_NUM_THREADS={threads}, data {'CIFAR-10 test ' + cifar if cifar else 'synthetic'}")
    print(f"  mix: {dict(Counter(p['what'] for p in plan))}")
    print(f"  criterion per process, over the checkpoints after warm-up ({warmup} jobs): least-squares slope "
          f"< {MAX_SLOPE_MIB_PER_100} MiB per 100 jobs and growth first -> last checkpoint < {MAX_GROWTH_AFTER_WARMUP:.0%}")
    try:
        svc.start()
        pids = {"api": svc.api.pid, **{f"worker{k}": w.pid for k, w in enumerate(svc.workers)}}
        names = list(pids)
        checkpoints: list[dict[str, Any]] = []
        lock = threading.Lock()
        done = Counter()
        t0 = time.time()

        def sample(n: int) -> None:
            row = {"jobs": n, "t": time.time() - t0, **{k: rss_mib(pid) for k, pid in pids.items()},
                   "redis": rss_mib(svc.redis.pid)}
            checkpoints.append(row)

        sample(0)
        http = httpx.Client(base_url=svc.url, timeout=120, limits=httpx.Limits(max_connections=a.memory_clients + 2))
        nxt = iter(range(len(plan)))
        failures: list[tuple[int, Any]] = []
        stop = threading.Event()

        def client() -> None:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None or stop.is_set():
                    return
                r = http.post("/v1/jobs?reuse=false", json=plan[i]["body"])
                if r.status_code != 202:
                    with lock:
                        failures.append((i, f"submit {r.status_code}: {r.text[:200]}"))
                        done["rejected"] += 1
                    continue
                jid = r.json()["id"]
                while True:
                    v = http.get(f"/v1/jobs/{jid}", params={"wait": 30}).json()
                    if v.get("status") in FINAL:
                        break
                with lock:
                    done[v["status"]] += 1
                    if v["status"] != "finished":
                        failures.append((i, v.get("error")))
                    n = sum(done.values())
                    if n % a.memory_every == 0 or n == len(plan):
                        sample(n)
                        if a.memory_progress:
                            print(f"    {n} jobs, {time.time() - t0:.0f} s, " + ", ".join(
                                f"{k} {checkpoints[-1][k] or 0:.1f}" for k in names), flush=True)

        with ThreadPoolExecutor(a.memory_clients) as pool:
            try:
                for f in [pool.submit(client) for _ in range(a.memory_clients)]:
                    f.result()
            except KeyboardInterrupt:
                stop.set()  # clients finish the job they wait on, then the service is stopped
                raise
        wall = time.time() - t0
        alive = {k: (p.poll() is None) for k, p in zip(names[1:], svc.workers)}

        print(f"  {len(plan)} jobs in {wall:.0f} s: {dict(done)}; workers still the original processes: {alive}")
        print("  RSS (MiB) at checkpoints:")
        print("    " + f"{'jobs':>5} {'t [s]':>6} " + " ".join(f"{k:>8}" for k in [*names, "redis"]))
        for row in checkpoints:
            print("    " + f"{row['jobs']:>5} {row['t']:>6.0f} " + " ".join(f"{(row[k] or 0):>8.1f}" for k in [*names, "redis"]))
        verdicts = {}
        for k in names:
            f = flatness([c["jobs"] for c in checkpoints], [c[k] for c in checkpoints], warmup)
            verdicts[k] = f
            print(f"  {k:>8}: start {checkpoints[0][k] or 0:.1f} MiB; after warm-up {f['first']:.1f} -> {f['last']:.1f} MiB "
                  f"({f['growth']:+.2%}), slope {f['slope']:+.3f} MiB/100 jobs -> {'PASS' if f['ok'] else 'FAIL'} {f['why']}")
        rf = flatness([c["jobs"] for c in checkpoints], [c["redis"] for c in checkpoints], warmup)
        print(f"     redis: (not judged: it stores every record) {rf['first']:.1f} -> {rf['last']:.1f} MiB, "
              f"slope {rf['slope']:+.3f} MiB/100 jobs")
        ok = all(v["ok"] for v in verdicts.values()) and not failures and all(alive.values())
        if failures:
            print(f"  jobs not finished: {len(failures)}, e.g. {failures[:3]}")
        if a.memory_json:
            Path(a.memory_json).write_text(json.dumps({"jobs": len(plan), "clients": a.memory_clients, "threads": threads,
                                                        "warmup": warmup, "checkpoints": checkpoints, "wall_s": wall,
                                                        "outcomes": dict(done), "workers_alive": alive,
                                                        "verdicts": verdicts, "ok": ok}, indent=1))
        if a.memory_plot:
            plot_memory(checkpoints, [*names, "redis"], warmup, a.memory_plot, threads)
            print(f"  figure: {a.memory_plot}")
        print("  RESULT:", "OK" if ok else "FAILED", f"(logs in {tmp})")
        return ok
    finally:
        svc.stop()


def plot_memory(checkpoints: list[dict[str, Any]], names: list[str], warmup: int, path: str, threads: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    xs = [c["jobs"] for c in checkpoints]
    for k in names:
        ys = [c[k] or math.nan for c in checkpoints]
        style = ":" if k == "redis" else "-"
        ax = ax1 if k.startswith("worker") else ax2
        ax.plot(xs, ys, style, marker=".", label=k)
    for ax, title in ((ax1, "workers (RQ SimpleWorker, long-lived)"), (ax2, "API (uvicorn) and redis-server")):
        ax.axvline(warmup, color="grey", lw=0.8, ls="--")
        ax.text(warmup, ax.get_ylim()[0], " end of warm-up", color="grey", fontsize=8, va="bottom")
        ax.set_xlabel("jobs finished")
        ax.set_ylabel("VmRSS [MiB]")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"bench/soak.py memory phase: {xs[-1]} jobs, no kills, OMP_NUM_THREADS={threads}", fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--kills", type=int, default=3, help="worker SIGKILLs (each followed by a restart)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for all accepted jobs to reach a final state")
    ap.add_argument("--sample", type=int, default=12, help="finished results recomputed in-process")
    ap.add_argument("--seed", type=int, default=0)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--memory-only", action="store_true", help="run only the kill-free memory phase")
    g.add_argument("--no-memory", action="store_true", help="run only the fault phase")
    ap.add_argument("--memory-jobs", type=int, default=1000, help="jobs in the memory phase")
    ap.add_argument("--memory-clients", type=int, default=4, help="closed-loop clients in the memory phase")
    ap.add_argument("--memory-data", choices=["cifar10", "synthetic"], default="cifar10",
                    help="CIFAR-10 test subsets (synthetic when no local copy is found) or synthetic images")
    ap.add_argument("--memory-every", type=int, default=25, help="RSS checkpoint every N finished jobs")
    ap.add_argument("--memory-plot", default=None, help="write RSS vs jobs finished to this PNG")
    ap.add_argument("--memory-json", default=None, help="write the checkpoints to this JSON file")
    ap.add_argument("--memory-progress", action="store_true", help="print each checkpoint as it is taken")
    a = ap.parse_args()
    threads = os.environ.setdefault("OMP_NUM_THREADS", "1")
    ok = True
    if not a.memory_only:
        ok = fault_phase(a, threads) and ok
    if not a.no_memory:
        ok = memory_phase(a, threads) and ok
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
