"""CPU/GPU reproduction of the NIO comparison (issue 5): a thin wrapper over `initscore experiment`.

Run it under the shared benchmark lock (never two benchmarks at once on this machine):

    flock /tmp/initscore-bench.lock .venv/bin/python bench/nio_reproduction.py --preset cpu --out runs/exp_cpu

which is the same as `initscore experiment --preset cpu --out runs/exp_cpu`. On a CUDA
machine: `--preset gpu` (ResNet-110 / WRN-28-10, 200 epochs) or `--preset gpu-vit`.
Prints the markdown tables and the total wall time; results.json + PNGs go to --out.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", default="runs/exp_cpu")
    ap.add_argument("--seeds", default=None, help="comma-separated override")
    ap.add_argument("--epochs", type=int, default=None)
    a = ap.parse_args(argv)
    from initscore.errors import InitscoreError
    from initscore.experiments import override, preset
    from initscore.experiments.runner import run_experiment
    from initscore.experiments.summary import markdown

    try:
        cfg = override(preset(a.preset), seeds=[int(s) for s in a.seeds.split(",")] if a.seeds else None,
                       recipe={"epochs": a.epochs} if a.epochs else None)
        t0 = time.perf_counter()
        res = run_experiment(cfg, a.out)
    except (InitscoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(res.to_dict()))
    print(f"total wall time {time.perf_counter() - t0:.0f} s; results in {a.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
