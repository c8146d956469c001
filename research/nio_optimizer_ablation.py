"""Follow-up 3 of research/nio_investigation.md: the cpu preset's NIO with the reference code's optimizer (rescale_adam).

Rectification only (no training) on the tuning seeds 10/11 and data seed 1 (never the reported run's),
held-out exact GradCosine before/after, via ``research.ablation.run_ablation``. Prints one line
per (variant, seed) and writes the rows as JSON.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_optimizer_ablation --pool 2000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_optimizer_ablation --pool 10000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_optimizer_ablation --pool 2000 --bn
"""
from __future__ import annotations

from research.ablation import tuning_main, variant
from research.nobn_study import PRESET_NIO

RA = PRESET_NIO.updated(optimizer="rescale_adam")
VARIANTS = {
    "preset": variant(PRESET_NIO),
    "ra lr0.1 w1": variant(RA, lr=0.1),
    "ra lr0.05 w1": variant(RA, lr=0.05),
    "ra lr0.1 w0": variant(RA, lr=0.1, gn_weight=0.0),
    "ra lr0.05 w0": variant(RA, lr=0.05, gn_weight=0.0),
    "ra lr0.01 w1": variant(RA, lr=0.01),
    "ra lr0.01 w0": variant(RA, lr=0.01, gn_weight=0.0),
}

if __name__ == "__main__":
    tuning_main(VARIANTS, __doc__.splitlines()[0], "nio_optimizer_ablation")
