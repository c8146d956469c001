"""Which tensors get scales? The cpu preset's NIO with ``scale_tensors`` restricted (issue 5, item 3).

Rectification only (no training) on the tuning seeds 10/11 and data seed 1 (never the reported run's), held-out
exact GradCosine before/after, via ``initscore.experiments.ablation.run_ablation``. Prints one markdown row per
variant (per-seed values) and writes the rows as JSON.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/nio_tensor_ablation.py --pool 2000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/nio_tensor_ablation.py --pool 10000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/nio_tensor_ablation.py --pool 2000 --bn
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from initscore.experiments.ablation import per_seed_lines, run_ablation
from initscore.experiments.config import DataConfig
from initscore.experiments.nobn_study import PRESET_NIO

# ResNet-20 parameter names: conv1.weight, layer{1,2,3}.{0,1,2}.conv{1,2}.weight, fc.weight (+ BN affine / biases)
VARIANTS = {
    "all (preset)": PRESET_NIO,
    "fc only": {**PRESET_NIO, "scale_tensors": ["fc.weight"]},
    "all but fc": {**PRESET_NIO, "scale_tensors": ["!fc.*"]},
    "block conv2 only": {**PRESET_NIO, "scale_tensors": ["layer*.conv2.weight"]},
    "block conv1 only": {**PRESET_NIO, "scale_tensors": ["layer*.conv1.weight"]},
    "stem conv + fc": {**PRESET_NIO, "scale_tensors": ["conv1.weight", "fc.weight"]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=2000, help="training pool size (data seed 1)")
    ap.add_argument("--bn", action="store_true", help="ResNet-20 with BatchNorm (default: without)")
    ap.add_argument("--seeds", default="10,11", help="network seeds (default: the tuning seeds 10,11)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--json", default=None, help="output (default runs/nio_tensor_ablation_POOL_[no]bn.json)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    variants = VARIANTS if a.variants is None else {k: VARIANTS[k] for k in a.variants.split(",")}
    spec = {"arch": "resnet20", "args": {"bn": a.bn}}
    data = DataConfig(train_size=a.pool, test_size=1, heldout_size=128, heldout_batch_size=64, seed=1)
    rows = run_ablation(spec, [int(s) for s in a.seeds.split(",")], data=data, variants=variants)
    out = Path(a.json or f"runs/nio_tensor_ablation_{a.pool}_{'bn' if a.bn else 'nobn'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, default=str))
    for line in per_seed_lines(rows):
        print(line)


if __name__ == "__main__":
    main()
