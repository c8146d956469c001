"""How fast the /ui job list renders for a key with 1,000 jobs (target < 300 ms), through the real service.

A private redis-server and the API under uvicorn (queued mode, keys configured, no worker so every job stays
queued); 1,000 score jobs are submitted for one key and 50 for another. Then the list fragment the page loads,
``GET /ui/fragments/jobs`` (the newest page: INITSCORE_MAX_LIST_LIMIT rows, 200 by default), every page of the
1,000 jobs walked with the cursor, and the JSON listing ``GET /v1/jobs?limit=200`` beside them, are fetched
--repeats times each by one client. Prints median and p95 wall time and the ratio of the median to 300 ms.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/ui_joblist.py [--jobs 1000] [--repeats 30]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from _stack import Stack

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args(argv)
    import httpx

    sys.path.insert(0, str(REPO))
    from service.deps import hash_key

    keys = f"{hash_key('k-a')},{hash_key('k-b')}"
    with Stack(workers=0, env={"INITSCORE_API_KEYS": keys}, prefix="ui-bench-") as stack:  # no worker: jobs stay queued
        with httpx.Client(base_url=stack.url, timeout=30) as c:
            t0 = time.perf_counter()
            for key, n in (("k-a", a.jobs), ("k-b", 50)):
                for i in range(n):
                    r = c.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, json={
                        "kind": "score", "model": {"arch": "mlp", "args": {"hidden": 8}},
                        "data": {"kind": "synthetic", "batch_size": 4, "seed": i}})
                    assert r.status_code == 202, r.text
            print(f"submitted {a.jobs} + 50 jobs in {time.perf_counter() - t0:.1f} s")
            head = {"Authorization": "Bearer k-a"}
            rows = {}

            def walk() -> int:
                n, cursor = 0, None
                while True:
                    r = c.get("/ui/fragments/jobs" + (f"?cursor={cursor}" if cursor else ""), headers=head)
                    assert r.status_code == 200
                    n += r.text.count("#/jobs/")
                    m = re.search(r'href="#/[?]cursor=([0-9]+)"', r.text)
                    if not m:
                        return n
                    cursor = m.group(1)

            for name, fetch in (("ui list, newest page", lambda: c.get("/ui/fragments/jobs", headers=head).text.count("#/jobs/")),
                                ("ui list, all pages", walk),
                                ("json list, limit 200", lambda: len(c.get("/v1/jobs?limit=200", headers=head).json()["items"]))):
                times = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    n_rows = fetch()
                    times.append(time.perf_counter() - t)
                rows[name] = (statistics.median(times), statistics.quantiles(times, n=20)[18], n_rows)
            for name, (med, p95, n_rows) in rows.items():
                print(f"{name:28s} {n_rows:5d} rows  median {med * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  "
                      f"median / 300 ms target = {med / 0.3:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
