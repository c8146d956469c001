"""The recommended score ``ensemble`` (torch-free arithmetic; constants in CALIBRATION).

    ensemble = sum over inputs m of log Phi(z_m),   z_m = (t_m(value_m) - mean_m) / std_m

t = log10 for the positive, heavy-tailed inputs (LOG_INPUTS), identity otherwise; Phi is the
standard normal CDF. This is AZ-NAS's non-linear rank aggregation, sum_m log(rank_m / N)
(Lee & Ham, CVPR 2024), with each input's rank/N among the candidates replaced by Phi(z_m), the
rank/N the value would have in a normal population fitted once on calibration cells: like
AZ-NAS it punishes an architecture that is bad in ANY input (log Phi -> -inf) more than it
rewards one that is very good in one, and, unlike a rank over the request, one architecture's
score needs no other architecture (deterministic per spec, streamable).

Zero-cost in the honest sense: no predictor is trained on accuracies. Two constants per input, ten in
all, each input's (mean, std) on CALIBRATION_SOURCE's 200 cells only, which are disjoint from every cell
the benchmark reports (docs/nas.md). Four inputs measure capacity (synflow, meco, meco_opt, swap: chosen
by bench/fit_ensemble.py on those cells); identity_gain detects direct input-to-output paths, which
those four score lower (a skip edge replaces a convolution); the test that decided it is fixed in
bench/results/nb201_fresh_preregistration.md, its figures are in docs/nas.md.
The inputs need forward passes only, no backward pass: synflow (|W| network), meco and meco_opt (one
sample), swap (16 samples), identity_gain (three forwards of 4 samples).
"""
from __future__ import annotations

import math
from typing import Mapping

INPUTS: tuple[str, ...] = ("synflow", "meco", "meco_opt", "swap", "identity_gain")
LOG_INPUTS = frozenset({"synflow", "flops", "params", "grad_norm", "snip", "swap", "l2_norm", "zico"})
# name -> (mean, std) of the transformed value on the 200 calibration cells
CALIBRATION: dict[str, tuple[float, float]] = {
    "synflow": (25.196753751547472, 8.74878370579264),
    "meco": (12.184949657076112, 12.352643803992146),
    "meco_opt": (311.4840756468963, 214.99689727187635),
    "swap": (4.596843961638811, 0.2386474285222231),
    "identity_gain": (0.2804850293104399, 0.4603431363365663),
}
CALIBRATION_SOURCE = (
    "bench/fit_ensemble.py --budget 0.5 --candidates params,flops,synflow,meco,meco_opt,swap,l2_norm,naswot on "
    "positions 300:500 of random.Random(4242).sample(range(15625), 1200) (NAS-Bench-201, official model, one CIFAR-10 "
    "train batch of 64, seed 0); the benchmark reports positions 0:300 and 500:1200 only. Candidates: the proxies "
    "that need no backward pass and run on any Conv/ReLU network (so the service's default works for every model "
    "family); best subset by Spearman rho on those 200 cells within 0.5 s per cell. identity_gain: its mean/std on "
    "the same cells (195 scored; bench/results/nb201_identity_gain_s4242.jsonl), added by the pre-registered test "
    "bench/nb201_preregistered.py"
)


def transform(name: str, value: float) -> float:
    if name in LOG_INPUTS:
        return math.log10(max(value, 1e-300))
    return value


def log_phi(z: float) -> float:
    """log of the standard normal CDF, accurate in the far left tail (asymptotic series below -30)."""
    if z > -30.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    return -0.5 * z * z - math.log(-z) - 0.5 * math.log(2.0 * math.pi) + math.log1p(-1.0 / (z * z))


def ensemble_score(values: Mapping[str, float]) -> float:
    total = 0.0
    for name in INPUTS:
        mean, std = CALIBRATION[name]
        total += log_phi((transform(name, values[name]) - mean) / std)
    return total
