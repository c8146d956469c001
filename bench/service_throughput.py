"""Service throughput and API latency (issue 3 benchmark; run under flock, never in unit tests).

1. N score jobs (ResNet-20 by default, B=64 synthetic CIFAR-shaped data, distinct
   data seeds so no content-hash reuse) are run (a) in-process with
   ``initscore.jobs.run_job`` one after another and (b) submitted through the Python
   client to the queued service (uvicorn API + ONE ``worker.main`` subprocess + a
   private redis-server) and waited for. Reported: jobs/s of both and their ratio
   (target >= 0.9). Both sides use the same OMP_NUM_THREADS.
2. 50 concurrent pollers (asyncio + httpx, in this process) GET /v1/jobs/{id} of
   finished jobs, twice: closed loop (no think time: 50 requests always in flight,
   a saturation test) and paced (each poller every --poll-interval s, like a client
   polling a job); reported: p50/p99 latency in ms (target p99 < 50 ms).

    flock /tmp/initscore-bench.lock .venv/bin/python bench/service_throughput.py [--n 200] [--arch resnet20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _stack import Stack

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def requests_for(n: int, arch: str, args: dict, batch_size: int, offset: int = 0) -> list[dict]:
    return [{"kind": "score", "model": {"arch": arch, "args": args},
             "data": {"kind": "synthetic", "batch_size": batch_size, "seed": offset + i, "limit": batch_size}} for i in range(n)]


def in_process(reqs: list[dict]) -> float:
    from initscore.jobs import run_job

    run_job(reqs[0] | {"data": reqs[0]["data"] | {"seed": 10**6}})  # warm-up (imports, allocator)
    t0 = time.perf_counter()
    for r in reqs:
        run_job(r)
    return len(reqs) / (time.perf_counter() - t0)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


async def pollers(url: str, ids: list[str], n_pollers: int, per_poller: int, interval: float) -> list[float]:
    """`n_pollers` concurrent clients, each GETting job resources `per_poller` times, `interval` s apart
    (0 = closed loop, no think time). One untimed request per poller first opens its connection."""
    import httpx

    lat: list[float] = []

    async def one(k: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            await c.get(f"/v1/jobs/{ids[k % len(ids)]}")
            await asyncio.sleep(interval * k / max(1, n_pollers))  # spread the pollers' phases
            for i in range(per_poller):
                if interval:
                    await asyncio.sleep(interval)
                jid = ids[(k * per_poller + i) % len(ids)]
                t = time.perf_counter()
                r = await c.get(f"/v1/jobs/{jid}")
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200

    await asyncio.gather(*(one(k) for k in range(n_pollers)))
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--args", default="{}")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--per-poller", type=int, default=40)
    ap.add_argument("--poll-interval", type=float, default=0.5, help="think time of the paced pollers (s)")
    a = ap.parse_args()
    threads = os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = json.loads(a.args)
    with Stack(workers=1, env={"OMP_NUM_THREADS": threads}) as stack:
        url = stack.url
        from client import Client

        reqs = requests_for(a.n, a.arch, args, a.batch_size)
        rate_inproc = in_process(reqs)

        with Client(url, retries=5) as c:
            warm = c.submit(requests_for(1, a.arch, args, a.batch_size, offset=10**6 + 1)[0], reuse=False)
            c.wait(warm, timeout=300)
            t0 = time.perf_counter()
            ids = [c.submit(r, reuse=False)["id"] for r in reqs]
            t_submit = time.perf_counter() - t0
            done = [c.wait(j, timeout=3600) for j in ids]
            elapsed = time.perf_counter() - t0
            failed = [d for d in done if d["status"] != "finished"]
            rate_service = a.n / elapsed
            # same numbers as in-process (spot check)
            from initscore.jobs import run_job

            ref, _, _ = run_job(reqs[0])
            assert abs(done[0]["result"]["gc"] - ref.gc) <= 1e-6 * max(1.0, abs(ref.gc)), "service result differs"

        lat_ms = [x * 1000 for x in asyncio.run(pollers(url, ids, a.pollers, a.per_poller, 0.0))]
        paced_ms = [x * 1000 for x in asyncio.run(pollers(url, ids, a.pollers, a.per_poller, a.poll_interval))]
        out = {
            "jobs": a.n, "arch": a.arch, "batch_size": a.batch_size, "omp_threads": int(threads), "failed": len(failed),
            "in_process_jobs_per_s": round(rate_inproc, 3), "service_jobs_per_s": round(rate_service, 3),
            "ratio_service_to_in_process": round(rate_service / rate_inproc, 3), "submit_seconds_all": round(t_submit, 3),
            "poll_requests_each": len(lat_ms), "pollers": a.pollers,
            "closed_loop_get_latency_ms_p50": round(statistics.median(lat_ms), 2),
            "closed_loop_get_latency_ms_p99": round(percentile(lat_ms, 99), 2),
            "poll_interval_s": a.poll_interval,
            "paced_get_latency_ms_p50": round(statistics.median(paced_ms), 2),
            "paced_get_latency_ms_p99": round(percentile(paced_ms, 99), 2),
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
