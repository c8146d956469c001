"""Per-architecture combined proxy (torch-free arithmetic; constants in CALIBRATION).

ensemble = mean over inputs p of (t_p(value_p) - mean_p) / std_p, with t = log10 for the
positive, heavy-tailed synflow and params and identity otherwise. mean_p/std_p were fixed
once on a calibration sample of NAS-Bench-201 cells (seed and size in CALIBRATION_SOURCE),
disjoint in seed from the sample the benchmark reports (docs/nas.md). Because the
constants are fixed, the score of one architecture needs no other architecture.
"""
from __future__ import annotations

import math
from typing import Mapping

INPUTS: tuple[str, ...] = ("synflow", "jacob_cov", "naswot", "params")
LOG_INPUTS = frozenset({"synflow", "flops", "params", "grad_norm", "snip"})
# name -> (mean, std) of the transformed value on the calibration sample
CALIBRATION: dict[str, tuple[float, float]] = {
    "jacob_cov": (-341.028206326863, 1217.4096769764285),
    "naswot": (753.1244754323698, 49.80628399086092),
    "params": (5.508136383196639, 0.29933347943625993),
    "synflow": (24.298412166214177, 8.476902893322158),
}
CALIBRATION_SOURCE = (
    "bench/fit_ensemble.py on bench/nb201_ranking.py --n 200 --seed 1 (NAS-Bench-201, CIFAR-10 train batch of 64); "
    "best 2..5-subset of synflow, jacob_cov, naswot, flops, snip, grad_norm, params, zen by rank correlation"
)


def transform(name: str, value: float) -> float:
    if name in LOG_INPUTS:
        return math.log10(max(value, 1e-300))
    return value


def ensemble_score(values: Mapping[str, float]) -> float:
    total = 0.0
    for name in INPUTS:
        mean, std = CALIBRATION[name]
        total += (transform(name, values[name]) - mean) / std
    return total / len(INPUTS)
