"""Per-architecture combined proxy (torch-free arithmetic; constants in CALIBRATION).

ensemble = mean over inputs p of (t_p(value_p) - mean_p) / std_p, with t = log10 for the
positive, heavy-tailed synflow and flops and identity otherwise. mean_p/std_p were fixed
once on a calibration sample of NAS-Bench-201 cells (seed and size in CALIBRATION_SOURCE),
disjoint in seed from the sample the benchmark reports (docs/nas.md). Because the
constants are fixed, the score of one architecture needs no other architecture.
"""
from __future__ import annotations

import math
from typing import Mapping

INPUTS: tuple[str, ...] = ("synflow", "jacob_cov", "naswot", "flops")
LOG_INPUTS = frozenset({"synflow", "flops"})
# name -> (mean, std) of the transformed value on the calibration sample
CALIBRATION: dict[str, tuple[float, float]] = {
    "synflow": (0.0, 1.0),
    "jacob_cov": (0.0, 1.0),
    "naswot": (0.0, 1.0),
    "flops": (0.0, 1.0),
}
CALIBRATION_SOURCE = "not calibrated yet"


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
