"""GET /v1/jobs/{id} latency with 50 pollers polling every 0.5 s IN PHASE, while the worker is busy.

Real parts (``bench/_stack.Stack``): a private redis-server, `uvicorn --factory service.app:create_app` and one
`python -m worker.main`, all started from the code tree given by --repo (default: this checkout), so an older
tree (e.g. `git archive <rev> | tar -x -C /tmp/old`) can be measured the same way. The worker is kept busy by a
long rectify job; each poller owns one queued score job (the first poller polls the running job). All pollers
fire at the same instants t0 + k * interval (synchronized bursts: the worst case for an API that blocks its event
loop, and for one that shares its cores with the worker).

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/poll_latency.py [--repo DIR]

Prints p50/p90/p99/max of the request latencies measured by the pollers, the three rounds (bursts) with the
slowest request, and the CPU seconds spent
during the polling phase per request by the API's processes (``/proc/<pid>/stat`` utime+stime, summed
over the uvicorn process and its children), by this poller process (``getrusage``) and by the worker,
the worker's CPU niceness as the kernel reports it, and the 1-minute load average at the end.
``--api-workers N`` starts uvicorn with N processes; ``--http``/``--loop`` choose uvicorn's parser and loop;
``--worker-nice N`` sets INITSCORE_WORKER_NICE (default: the deployment default; code trees without the
setting ignore it, which the reported ``worker_nice`` shows).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import httpx

from _stack import Stack

HERE = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of every live descendant (seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(f[1]), []).append(int(d.name))
            stats[int(d.name)] = (int(f[11]) + int(f[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


def own_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: {what} within {timeout:.0f} s")


async def poll(url: str, ids: list[str], interval: float, rounds: int) -> tuple[list[tuple[int, float]], int]:
    """(round, seconds) of every request, and the number of answers other than 200."""
    lat: list[tuple[int, float]] = []
    errors = 0
    limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=len(ids) + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        t0 = time.perf_counter() + 1.0

        async def poller(job_id: str) -> None:
            nonlocal errors
            for k in range(rounds):
                await asyncio.sleep(max(0.0, t0 + k * interval - time.perf_counter()))
                s = time.perf_counter()
                r = await client.get(f"/v1/jobs/{job_id}")
                lat.append((k, time.perf_counter() - s))
                errors += r.status_code != 200

        await asyncio.gather(*(poller(j) for j in ids))
    return lat, errors


async def poll_raw(url: str, ids: list[str], interval: float, rounds: int) -> tuple[list[tuple[int, float]], int]:
    """The same schedule and one keep-alive connection per poller, but a minimal HTTP/1.1 client on asyncio
    streams (request line + Host, read the head and Content-Length bytes): real clients run on other machines,
    and httpx's own CPU per request competes with the API on this one."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[tuple[int, float]] = []
    errors = 0
    t0 = time.perf_counter() + 1.0

    async def poller(job_id: str) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        req = f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        for k in range(rounds):
            await asyncio.sleep(max(0.0, t0 + k * interval - time.perf_counter()))
            s = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            lat.append((k, time.perf_counter() - s))
            errors += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    await asyncio.gather(*(poller(j) for j in ids))
    return lat, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(HERE), help="code tree to run the API and worker from")
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn --workers (API processes)")
    ap.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    ap.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    ap.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                    help="the pollers' HTTP client: httpx.AsyncClient, or a minimal one on asyncio streams (see poll_raw)")
    ap.add_argument("--worker-nice", type=int, default=None,
                    help="INITSCORE_WORKER_NICE of the worker (default: the settings' default)")
    a = ap.parse_args()
    repo = Path(a.repo).resolve()
    env = {"OMP_NUM_THREADS": "1", "INITSCORE_MAX_ITERS": "100000", "INITSCORE_REUSE_RESULTS": "false"}
    stack = Stack(workers=1, env=env, repo=repo, api_workers=a.api_workers, api_args=["--http", a.http, "--loop", a.loop],
                  worker_nice=a.worker_nice, prefix="initscore-poll-")
    with stack:
        url = stack.url
        api, worker = stack.api, stack.workers[0]
        model = {"arch": "mlp", "args": {"in_features": 3072, "hidden": 256, "depth": 4, "num_classes": 10}}
        data = {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 64, "limit": 512}
        busy = httpx.post(f"{url}/v1/jobs", json={"kind": "rectify", "model": model, "data": data,
                                                   "options": {"iters": 100000, "heldout_batches": 1}}).json()["id"]
        wait_until(lambda: httpx.get(f"{url}/v1/jobs/{busy}").json()["status"] == "running", 180, "the worker never got busy")
        ids = [busy] + [httpx.post(f"{url}/v1/jobs", json={"kind": "score", "model": model, "data": {**data, "seed": i}}).json()["id"]
                        for i in range(a.pollers - 1)]
        cpu0 = (cpu_seconds(api.pid), own_cpu(), cpu_seconds(worker.pid), time.perf_counter())
        lat, errors = asyncio.run((poll_raw if a.client == "raw" else poll)(url, ids, a.interval, a.rounds))
        cpu1 = (cpu_seconds(api.pid), own_cpu(), cpu_seconds(worker.pid), time.perf_counter())
        assert httpx.get(f"{url}/v1/jobs/{busy}").json()["status"] == "running", "the worker was not busy throughout"
        ms = sorted(x * 1000 for _, x in lat)
        worst: dict[int, float] = {}
        for k, x in lat:
            worst[k] = max(worst.get(k, 0.0), x * 1000)
        q = statistics.quantiles(ms, n=100, method="inclusive")
        out = {"repo": str(repo), "requests": len(ms), "errors": errors, "pollers": a.pollers, "interval_s": a.interval,
               "api_workers": a.api_workers, "http": a.http, "loop": a.loop, "client": a.client,
               "p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "p99_ms": round(q[98], 1), "max_ms": round(ms[-1], 1),
               "slowest_rounds_ms": [[k, round(v, 1)] for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:3]],
               "api_cpu_ms_per_req": round((cpu1[0] - cpu0[0]) * 1000 / len(ms), 2),
               "poller_cpu_ms_per_req": round((cpu1[1] - cpu0[1]) * 1000 / len(ms), 2),
               "worker_cpu_share": round((cpu1[2] - cpu0[2]) / (cpu1[3] - cpu0[3]), 2),
               "worker_nice": os.getpriority(os.PRIO_PROCESS, worker.pid),
               "load1": round(os.getloadavg()[0], 2)}
        print(json.dumps(out))
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
        return 0

if __name__ == "__main__":
    sys.exit(main())
