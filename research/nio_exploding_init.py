"""Rectifying a network whose Kaiming initialization explodes: the no-BN ResNet-110 of the ``gpu`` preset.

Without BatchNorm every residual block of a Kaiming-initialized ResNet doubles the signal's variance, so the
no-BN ResNet-110 (54 blocks) starts with per-sample gradient norms near 1e10-1e11 (a one-epoch check on an H200
measured a held-out g_max of 9.3e10, docs/results/training.md "GPU configurations"). There the ``gpu`` preset's relative
bound (gamma = 2x the first batch's g_max) bounded nothing, and the first gradients, of a GN near 1e10, are
orders of magnitude above the later ones, so Adam's moments remember them for the whole run. This script rectifies the network (no training) with
the preset's NIO settings (sample mode, batches of 64, Adam lr 0.1, margin 0.3, last feasible iterate, 100
iterations) and variants of the bound and the scale optimizer, and prints for each run: held-out exact GC and GN
before -> after, held-out g_max, the returned iterate, the number of constraint steps, the spread of the
learned scales (min/max), and where the trajectory went (g_max after 1, 5, 20 and 100 steps).

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_exploding_init
    ... -m research.nio_exploding_init --seeds 10,11 --variants "adam gamma 2x,adam gamma 5" --iters 100

Seeds 10/11 and data seed 1 (the tuning seeds of research/nio_investigation.md); ``--seeds 0 --data-seed 0`` repeats the H200
run's network and pool on the CPU. Rows are written to runs/nio_exploding_init.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from initscore.contract import RectifyOptions  # noqa: E402
from research.ablation import Variant, variant  # noqa: E402

# The gpu preset's NIO setting; batches of 64 (nio.rectify's default) unless a variant says otherwise.
BASE = RectifyOptions(mode="sample", gamma_margin=0.3, select="feasible", lr=0.1)
VARIANTS: dict[str, Variant] = {
    "adam gamma 2x": variant(BASE),                                       # the gpu preset's earlier relative bound
    "adam gamma 5": variant(BASE, gamma=5.0),                             # the paper's absolute CIFAR bound (2-5)
    "rescale_adam gamma 2x": variant(BASE, optimizer="rescale_adam"),    # per-scale gradient clip 1
    "rescale_adam gamma 5": variant(BASE, optimizer="rescale_adam", gamma=5.0),
    "gradinit adam gamma 2x": variant(BASE, method="gradinit", mode="batch", batch_size=128),  # the preset's baseline
}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="10,11")
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--arch", default="resnet110")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--json", default="runs/nio_exploding_init.json")
    a = ap.parse_args(argv)

    import torch

    from initscore import models, nio
    from initscore.experiments.config import DataConfig
    from initscore.experiments.runner import heldout_exact, load_splits

    torch.set_num_threads(2)
    chosen = VARIANTS if a.variants is None else {k: VARIANTS[k] for k in a.variants.split(",")}
    spec = {"arch": a.arch, "args": {"bn": False}}
    data = DataConfig(train_size=a.pool, test_size=1, heldout_size=128, heldout_batch_size=64, seed=a.data_seed)
    splits = load_splits(data, torch.device("cpu"))
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        torch.manual_seed(seed)
        base = models.build(spec)
        before = heldout_exact(base, splits.heldout, "sample", 2, 0.0)
        for name, v in chosen.items():
            options = v.options.updated(iters=a.iters, seed=seed)
            method = options.method
            t0 = time.perf_counter()
            rect = nio.rectify(base, splits.train, options, batch_size=v.batch_size or 64)
            m = models.build(spec)
            nio.apply(m, rect)
            after = heldout_exact(m, splits.heldout, "sample", 2, 0.0)
            sc = [s for k, s in rect.scales.items() if k not in rect.unscalable]
            traj = {str(k): rect.history[k - 1]["g_max"] for k in (1, 5, 20, 100) if k <= len(rect.history)}
            row = {"seed": seed, "variant": name, "method": method, "gamma": rect.gamma,
                   "gc_before": before["gc"], "gc_after": after["gc"], "gn_before": before["gn"], "gn_after": after["gn"],
                   "gmax_before": before["g_max"], "gmax_after": after["g_max"],
                   "gmax_batches_after": after["g_max_batches"], "returned_iterate": rect.returned_iterate,
                   "constrained": sum(1 for h in rect.history if h.get("constrained")), "iters": len(rect.history),
                   "scale_min": min(sc), "scale_max": max(sc), "gmax_trajectory": traj,
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            gam = "n/a" if rect.gamma is None else f"{rect.gamma:.3g}"
            print(f"| {seed} | {name} | {gam} | {row['gc_before']:.4f} -> {row['gc_after']:.4f} | "
                  f"{row['gn_before']:.3g} -> {row['gn_after']:.3g} | {row['gmax_after']:.3g} | "
                  f"{row['returned_iterate']} | {row['constrained']}/{row['iters']} | "
                  f"{row['scale_min']:.3f}-{row['scale_max']:.3f} | "
                  + ", ".join(f"{k}: {g:.2g}" for k, g in traj.items()) + f" | {row['seconds']:.0f} |", flush=True)
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    print("| seed | variant | gamma | held-out exact GC | held-out GN | held-out g_max after | returned | constraint "
          "steps | scales min-max | g_max after k steps (training batch) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    main()
