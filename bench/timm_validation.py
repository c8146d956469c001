"""Time the API's torch-free validation of every `timm:<name>` spec in the shipped catalog (target < 5 ms each).

For each catalog architecture, the API's own check (``service.validation.check_model``: registry lookup,
argument schema, parameter cap) runs on ``{"arch": "timm:<name>", "args": {"num_classes": 10}}`` in a fresh
process that has not imported torch; the first call (which loads the catalog) is reported apart. Prints the
median, 99th percentile and maximum per spec over all names and the ratio of the maximum to the 5 ms target.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/timm_validation.py
"""
from __future__ import annotations

import statistics
import sys
import time


def main() -> int:
    from initscore.contract import ModelSpec
    from initscore.models import timm_models
    from service.settings import Settings
    from service.validation import check_model

    settings = Settings()
    t0 = time.perf_counter()
    names = timm_models.names()
    first = time.perf_counter() - t0
    secs = []
    for name in names:
        spec = ModelSpec(arch=name, args={"num_classes": 10})
        errors: list = []
        t = time.perf_counter()
        check_model(spec, "model", settings, errors)
        secs.append(time.perf_counter() - t)
        if errors:
            print(f"{name}: {errors}", file=sys.stderr)
            return 1
    q = statistics.quantiles(secs, n=100)
    print(f"{len(names)} timm specs; catalog load {first * 1e3:.1f} ms; per spec median {statistics.median(secs) * 1e3:.3f} ms, "
          f"p99 {q[98] * 1e3:.3f} ms, max {max(secs) * 1e3:.3f} ms; max / 5 ms target = {max(secs) / 5e-3:.3f}; "
          f"torch imported: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
