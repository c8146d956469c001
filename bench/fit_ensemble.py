"""Choose and calibrate `ensemble` on CALIBRATION cells only (never the reported ones).

    .venv/bin/python bench/fit_ensemble.py bench/results/nb201_cache_s4242.jsonl --sample-seed 4242 --positions 300:500

Reads the per-cell cache of bench/nb201_ranking.py, keeps the cells at --positions of the
random.Random(--sample-seed) sample of NAS-Bench-201 (the calibration cells), and for every subset
(2..--max-size) of the candidate proxies computes, on those cells only,

    ensemble = sum_m log Phi((t_m(v_m) - mean_m) / std_m)      t = log10 for LOG_INPUTS, else identity

with mean_m/std_m the calibration cells' own; cells without a value (errors, disconnected) rank last.
Prints every subset's Spearman rho with its cost (sum of the median seconds of the passes it needs,
from the cache's timings) and the best subset whose cost is within --budget, with the constants to
paste into initscore/proxies/ensemble.py.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

LOG = {"synflow", "flops", "params", "grad_norm", "snip", "swap", "l2_norm", "zico"}
CANDIDATES = ("params", "flops", "synflow", "naswot", "jacob_cov", "epe_nas", "snip", "grad_norm", "zico", "meco",
              "meco_opt", "swap", "l2_norm", "az_expressivity", "az_progressivity", "az_trainability")


def log_phi(z: np.ndarray) -> np.ndarray:
    from scipy.special import log_ndtr

    return log_ndtr(z)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--sample-seed", type=int, default=4242)
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--positions", default="300:500")
    ap.add_argument("--max-size", type=int, default=4)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated proxies to choose from")
    ap.add_argument("--budget", type=float, default=1.0, help="max summed median seconds (cache timings) of the passes")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = ap.parse_args()
    acc_by_index = {}
    with open(Path(args.data_root) / "nas_bench_201" / "nats_tss_15625_test_acc.csv") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            acc_by_index[i] = float(row["CIFAR10TestAccuracy200Epochs"])
    sample = random.Random(args.sample_seed).sample(range(15625), args.n)
    keep = []
    for part in args.positions.split(","):
        a, _, b = part.partition(":")
        keep.extend(sample[int(a):int(b)])
    recs = {}
    for line in Path(args.cache).read_text().splitlines():
        r = json.loads(line)
        recs[int(r["nb201_index"])] = r
    rows = [recs[i] for i in keep if i in recs]
    print(f"calibration cells: {len(rows)} of {len(keep)} at positions {args.positions} (sample seed {args.sample_seed})")
    acc = np.array([acc_by_index[int(r["nb201_index"])] for r in rows])
    group_of, group_times = {}, {}
    for r in rows:
        for g, s in r.get("timings", {}).items():
            group_times.setdefault(g, []).append(s)
            for p in g.split("+"):
                group_of[p] = g
    cost = {g: statistics.median(v) for g, v in group_times.items()}
    cands = [c for c in args.candidates.split(",") if any(c in r.get("values", {}) for r in rows)]
    t = {}
    for c in cands:
        v = np.array([r["values"].get(c, np.nan) if not r.get("error") else np.nan for r in rows], dtype=float)
        if c in LOG:
            v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        t[c] = v
    results = []
    for size in range(2, args.max_size + 1):
        for combo in itertools.combinations(cands, size):
            cal = {c: (float(np.nanmean(t[c])), float(np.nanstd(t[c]))) for c in combo}
            s = np.zeros(len(rows))
            for c in combo:
                z = (t[c] - cal[c][0]) / cal[c][1]
                s += np.where(np.isnan(z), -1e9, log_phi(np.nan_to_num(z)))
            rho = float(spearmanr(s, acc).statistic)
            seconds = sum(cost.get(g, 0.0) for g in {group_of.get(c, c) for c in combo})
            results.append((rho, combo, cal, seconds))
    results.sort(key=lambda r: -r[0])
    for rho, combo, cal, seconds in results[:25]:
        print(f"{rho:.3f}  {seconds:5.2f}s  {'+'.join(combo)}")
    best = next(r for r in results if r[3] <= args.budget)
    rho, combo, cal, seconds = best
    print(f"\nBEST within {args.budget:.2f}s on the calibration cells: rho={rho:.3f} cost={seconds:.2f}s {combo}")
    print("INPUTS = " + repr(tuple(combo)))
    print("CALIBRATION = {" + ", ".join(f'"{c}": ({m!r}, {s!r})' for c, (m, s) in cal.items()) + "}")


if __name__ == "__main__":
    main()
