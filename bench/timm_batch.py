"""A batch job over 50 timm architectures at 32x32 through the real service, watching for out-of-memory kills.

A private redis-server, the API under uvicorn and ONE ``python -m worker.main`` (queued mode). 50 architectures
are drawn from the shipped catalog with ``random.Random(--seed)`` (``img_size=32`` where the constructor takes
it, ``num_classes=10``) and sent as one batch job on synthetic 3x32x32 data (B = --batch-size, batch mode D=2).
The worker's RSS is sampled every 0.5 s. Printed: finished / failed entries with each failure's reason (a model
over INITSCORE_MAX_PARAMS is refused on the meta device before it is allocated), the worker's peak RSS, whether
the worker was ever killed (its exit code and the kernel's OOM messages are checked), and the wall time.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/timm_batch.py [--n 50] [--seed 0] [--batch-size 16]
        [--names tiny_vit_5m_224,...]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from _stack import Stack

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--names", default="", help="comma-separated catalog names to send instead of a random draw")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import httpx

    from initscore.models import timm_models

    cat = timm_models.catalog()["models"]
    names = a.names.split(",") if a.names else random.Random(a.seed).sample(sorted(cat), a.n)
    specs = [{"arch": f"timm:{n}", "args": {"num_classes": 10, **({"img_size": 32} if cat[n]["img_size"] else {})}}
             for n in names]
    stack = Stack(workers=1, env={"INITSCORE_MAX_BATCH_MODELS": "1000", "HF_HUB_OFFLINE": "1"}, prefix="timm-batch-")
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mb(stack.workers[0].pid))

    t0 = time.perf_counter()
    with stack:
        threading.Thread(target=sample, daemon=True).start()
        wrk = stack.workers[0]
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            r = c.post("/v1/jobs", json={"kind": "batch", "models": specs, "options": {"mode": "batch"},
                                         "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10,
                                                  "batch_size": a.batch_size, "seed": 0}})
            assert r.status_code == 202, r.text
            job = r.json()
            while True:
                cur = c.get(f"/v1/jobs/{job['id']}", params={"wait": 10}).json()
                if cur["status"] in ("finished", "failed", "cancelled") or time.perf_counter() - t0 > a.timeout:
                    break
        wall = time.perf_counter() - t0
        stop.set()
        entries = (cur.get("result") or {}).get("entries", [])
        ok = [e for e in entries if e["status"] == "finished"]
        bad = [e for e in entries if e["status"] != "finished"]
        reasons = Counter(("over the cap" if "over the cap" in (e.get("error") or "") else
                           (e.get("error") or "").split(":")[0][:60]) for e in bad)
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout if shutil.which("dmesg") else ""
        oom = sum("Out of memory" in line or "oom-kill" in line for line in dmesg.splitlines())
        print(f"{len(specs)} timm architectures ({'named' if a.names else f'random.Random({a.seed})'}), B={a.batch_size}, 32x32, batch mode: "
              f"job {cur['status']}; {len(ok)} finished, {len(bad)} failed {dict(reasons)}")
        print(f"worker peak RSS {peak[0]:.0f} MB; worker alive at the end: {wrk.poll() is None} "
              f"(exit code {wrk.poll()}); kernel OOM messages: {oom}; wall {wall:.0f} s")
        for e in bad:
            print(f"  failed {e['model']['arch']}: {(e.get('error') or '')[:160]}")
        (stack.tmp.parent / "timm_batch_last.json").write_text(json.dumps(cur.get("result"), indent=1))
    stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
