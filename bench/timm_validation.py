"""Time the API's torch-free validation of every `timm:<name>` spec in the shipped catalog (target < 5 ms each).

For each catalog architecture, the API's own check (``service.validation.check_model``: registry lookup,
argument schema, parameter cap) runs on ``{"arch": "timm:<name>", "args": {"num_classes": 10}}`` in a process
that has not imported torch; the catalog load is reported apart. Every name is validated --repeats times, each
time as a first call (the per-name entry cache cleared), and a name's time is the median of its repeats, so one
scheduler hiccup on this shared machine does not stand for the name. Prints the median, 99th percentile and
maximum over all names and the ratio of the maximum to the 5 ms target.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/timm_validation.py [--repeats 5]
"""
from __future__ import annotations

import statistics
import sys
import time


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from initscore.contract import ModelSpec
    from initscore.models import timm_models
    from initscore.server.settings import Settings
    from service.validation import check_model

    settings = Settings()
    t0 = time.perf_counter()
    names = timm_models.names()
    first = time.perf_counter() - t0
    per_name: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(a.repeats):
        timm_models.entry.cache_clear()
        for name in names:
            spec = ModelSpec(arch=name, args={"num_classes": 10})
            errors: list = []
            t = time.perf_counter()
            check_model(spec, "model", settings, errors)
            per_name[name].append(time.perf_counter() - t)
            if errors:
                print(f"{name}: {errors}", file=sys.stderr)
                return 1
    secs = [statistics.median(v) for v in per_name.values()]
    q = statistics.quantiles(secs, n=100)
    print(f"{len(names)} timm specs x {a.repeats} first-call repeats; catalog load {first * 1e3:.1f} ms; per name (median of its repeats): median {statistics.median(secs) * 1e3:.3f} ms, "
          f"p99 {q[98] * 1e3:.3f} ms, max {max(secs) * 1e3:.3f} ms; max / 5 ms target = {max(secs) / 5e-3:.3f}; "
          f"torch imported: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
