"""How often do the cpu preset's rectified weights exceed gamma on new batches?

Reproduces the reported run's rectifications (``initscore experiment --preset cpu``: same data, seeds 0/1/2 and
options, no training) and measures g_max / gamma on every batch of 64 of N CIFAR-10 test images, for Kaiming and
for the returned weights (``research.gmax_tail``). Measurement only: nothing is chosen from it.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.heldout_gmax_tail --images 2048
    ... -m research.heldout_gmax_tail --models resnet20_nobn --methods nio,gradinit
    tuning seeds/data (never the reported ones) with the verification sized for 5 % (19 batches of 64):
    ... -m research.heldout_gmax_tail --models resnet20_nobn --seeds 10,11,12,13 --data-seed 1 --verify-batches 19
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from initscore.experiments.config import PRESETS
from research.gmax_tail import gmax_tail, markdown

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--images", type=int, default=2048, help="test images (batches of the rectification's size)")
    ap.add_argument("--seeds", default=None, help="comma-separated (default: the preset's)")
    ap.add_argument("--methods", default="nio")
    ap.add_argument("--models", default=None, help="comma-separated model labels (default: all of the preset's)")
    ap.add_argument("--verify-batches", type=int, default=None, help="override the preset's verify_batches")
    ap.add_argument("--data-seed", type=int, default=None, help="override the preset's data seed (tuning: 1)")
    ap.add_argument("--json", default=None, help="output (default runs/heldout_gmax_tail_PRESET.json)")
    a = ap.parse_args()
    cfg = PRESETS[a.preset]
    if a.verify_batches is not None:
        cfg = cfg.model_copy(update={"init": cfg.init.model_copy(
            update={"rectify": cfg.init.rectify.updated(verify_batches=a.verify_batches)})})
    if a.data_seed is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"seed": a.data_seed})})
    rows = gmax_tail(cfg, n_images=a.images, seeds=None if a.seeds is None else [int(s) for s in a.seeds.split(",")],
                     methods=a.methods.split(","), model_labels=None if a.models is None else a.models.split(","))
    out = Path(a.json or f"runs/heldout_gmax_tail_{a.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("\n".join(markdown(rows)))
