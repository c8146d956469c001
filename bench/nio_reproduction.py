"""CPU/GPU reproduction of the NIO comparison: a thin wrapper over `initscore experiment`.

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
    ap.add_argument("--ablation", action="store_true",
                    help="rectification-only ablation of NIO settings on ResNet-20 (no training)")
    a = ap.parse_args(argv)
    if a.ablation:
        import json
        from pathlib import Path

        from research.ablation import ablation_markdown, run_ablation

        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else [0, 1, 2]
        t0 = time.perf_counter()
        rows = run_ablation({"arch": "resnet20", "args": {"bn": False}}, seeds)
        rows += run_ablation({"arch": "resnet20", "args": {"bn": True}}, seeds,
                             variants={k: v for k, v in __import__("research.ablation", fromlist=["VARIANTS"]).VARIANTS.items()
                                       if not k.startswith("sample")})
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "ablation.json").write_text(json.dumps(rows, indent=1))
        print(ablation_markdown(rows))
        print(f"total wall time {time.perf_counter() - t0:.0f} s; results in {a.out}/ablation.json")
        return 0
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
