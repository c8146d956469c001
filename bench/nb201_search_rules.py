"""Candidate search rules for the best-of-N pick: chosen on the calibration cells, then evaluated once on held-out.

The second round of rules, against the four-input ensemble shipped before identity_gain (`ensemble4`); the rule that
changed `ensemble` came later, by the pre-registered test of bench/nb201_preregistered.py.

    .venv/bin/python bench/nb201_search_rules.py bench/results/nb201_cache_s4242.jsonl \
        --extra bench/results/nb201_zen_s4242.jsonl

Reads the per-cell caches of bench/nb201_ranking.py (no scoring; --extra caches are merged in by NB201 index, e.g. a
proxy scored later into its own file) and the CIFAR-10 200-epoch test accuracies. The cells of
random.Random(--sample-seed).sample(range(15625), 1200) at --calibration positions (default 300:500) are the
calibration cells; every other position of bench/results/nb201_cells_s4242_all.txt is held out.

Every rule in RULES is a score computed from one cell's own proxy values (plus, for the gate rules, one threshold
on the ensemble, a calibration-population quantile):

    z_m     = (t_m(v_m) - mean_m) / std_m          t = log10 for LOG, mean/std of the calibration cells
    sum_logphi(M)       = sum_{m in M} log Phi(z_m)                   (`ensemble4`, the shipped ensemble before identity_gain, for M = ENS)
    sum_logphi_shift(M, k) = sum_{m in M} log Phi(z_m - k)            (less flat at the top: rewards the top tail)
    sum_z(M)            = sum_{m in M} z_m                            (linear: rewards the top tail as much as
                                                                        it punishes the bottom)
    tail(M)             = -sum_{m in M} log Phi(-z_m)                 (rewards only the top tail)
    gate(q, m)          = ensemble below its calibration q-quantile; above it, z_m decides (lexicographic)

Step 1 (the choice, calibration cells only): best-of-100 over --draws seeded draws of 100 of the calibration cells
(overlapping), paired with the current ensemble's pick on the same draws; the rule: a candidate replaces the
ensemble only if its mean pick exceeds the ensemble's by more than two standard errors of the paired difference
(the standard error treats overlapping draws as independent, so it is optimistic) and its calibration Spearman rho
stays >= --min-rho; among those the highest mean pick. Step 2 (reported, never used for the choice): every rule on
the held-out cells that have its inputs, best-of-100 over 10 disjoint trials and, where >= 2,000 cells have the
inputs, best-of-1,000 over 10 overlapping draws, each next to params alone and the oracle on the same trials.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import spearmanr

LOG = {"synflow", "params", "flops", "swap", "swap_reg", "zico", "l2_norm", "snip", "grad_norm"}
ENS = ("synflow", "meco", "meco_opt", "swap")
# name -> (kind, inputs, argument); fixed before any held-out figure of these rules was computed
RULES: dict[str, tuple[str, tuple[str, ...], float]] = {
    "ensemble4 (no identity_gain)": ("logphi", ENS, 0.0),
    "sum log Phi(z - 1)": ("logphi", ENS, 1.0),
    "sum log Phi(z - 2)": ("logphi", ENS, 2.0),
    "sum z (linear)": ("z", ENS, 0.0),
    "top tail -sum log Phi(-z)": ("tail", ENS, 0.0),
    "ensemble, synflow twice": ("logphi", ("synflow",) + ENS, 0.0),
    "ensemble of synflow, meco_opt": ("logphi", ("synflow", "meco_opt"), 0.0),
    "ensemble + zico": ("logphi", ENS + ("zico",), 0.0),
    "ensemble + naswot": ("logphi", ENS + ("naswot",), 0.0),
    "ensemble + az_trainability": ("logphi", ENS + ("az_trainability",), 0.0),
    "ensemble + zen": ("logphi", ENS + ("zen",), 0.0),
    "ensemble + log params": ("logphi", ENS + ("params",), 0.0),
    "gate 30% -> synflow": ("gate", ("synflow",), 0.7),
    "gate 30% -> zen": ("gate", ("zen",), 0.7),
    "gate 30% -> az_trainability": ("gate", ("az_trainability",), 0.7),
    "gate 30% -> jacob_cov": ("gate", ("jacob_cov",), 0.7),
    "gate 30% -> params": ("gate", ("params",), 0.7),
}


def load(paths: list[Path]) -> dict[int, dict]:
    recs: dict[int, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            i = int(r["nb201_index"])
            old = recs.get(i)
            if old is None or path == paths[0]:
                recs[i] = {**r, "values": {**(old or {}).get("values", {}), **r["values"]}}
            else:  # an extra cache adds values, never replaces the main record
                old["values"] = {**r["values"], **old["values"]}
                old["error"] = old.get("error") or r.get("error")
    return recs


def transform(name: str, v: np.ndarray) -> np.ndarray:
    if name in LOG:
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    return v


def rule_scores(rule: tuple[str, tuple[str, ...], float], z: dict[str, np.ndarray], ens_thr: float) -> np.ndarray:
    """Score per cell; NaN (a missing or errored input) never wins a pick."""
    kind, inputs, arg = rule
    zs = [z[m] for m in inputs]
    if kind == "logphi":
        s = sum(log_ndtr(v - arg) for v in zs)
    elif kind == "z":
        s = sum(zs)
    elif kind == "tail":
        s = -sum(log_ndtr(-v) for v in zs)
    elif kind == "gate":
        e = sum(log_ndtr(z[m]) for m in ENS)
        s = np.where(e >= ens_thr, 1e3 + zs[0], e)
    else:
        raise ValueError(kind)
    return np.asarray(s, dtype=float)


def picks(score: np.ndarray, acc: np.ndarray, trials: list[np.ndarray]) -> np.ndarray:
    s = np.where(np.isnan(score), -np.inf, score)
    return np.array([acc[t][int(np.argmax(s[t]))] for t in trials])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--extra", action="append", default=[], help="more caches merged by NB201 index")
    ap.add_argument("--cells", default=str(Path(__file__).resolve().parent / "results" / "nb201_cells_s4242_all.txt"))
    ap.add_argument("--sample-seed", type=int, default=4242)
    ap.add_argument("--calibration", default="300:500")
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--min-rho", type=float, default=0.85)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = ap.parse_args()
    recs = load([Path(args.cache)] + [Path(p) for p in args.extra])
    acc_of = {}
    with open(Path(args.data_root) / "nas_bench_201" / "nats_tss_15625_test_acc.csv") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            acc_of[i] = float(row["CIFAR10TestAccuracy200Epochs"])
    order = [int(x) for x in Path(args.cells).read_text().split("\n") if x.strip() and not x.startswith("#")]
    sample = random.Random(args.sample_seed).sample(range(15625), 1200)
    assert order[:1200] == sample, "the cells file must start with the calibration sample"
    a, _, b = args.calibration.partition(":")
    cal_set = set(sample[int(a):int(b)])
    cal = [i for i in order if i in cal_set and i in recs and not recs[i].get("error")]
    held = [i for i in order if i not in cal_set and i in recs and not recs[i].get("error")]
    names = sorted({m for _, ins, _ in RULES.values() for m in ins} | set(ENS) | {"params"})

    def table(cells: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        vals = {m: transform(m, np.array([recs[i]["values"].get(m, np.nan) for i in cells], float)) for m in names}
        return vals, np.array([acc_of[i] for i in cells])

    cal_t, cal_acc = table(cal)
    norm = {m: (float(np.nanmean(v)), float(np.nanstd(v))) for m, v in cal_t.items() if np.isfinite(v).sum() > 10}
    rules = {k: r for k, r in RULES.items() if all(m in norm for m in r[1])}
    skipped = [k for k in RULES if k not in rules]

    def zs(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m: (t[m] - norm[m][0]) / norm[m][1] for m in norm}

    cal_z = zs(cal_t)
    e_cal = sum(log_ndtr(cal_z[m]) for m in ENS)

    def thr_for(rule) -> float:
        return float(np.nanquantile(e_cal, rule[2])) if rule[0] == "gate" else 0.0

    rng = np.random.default_rng(args.seed)
    draws = [rng.choice(len(cal), 100, replace=False) for _ in range(args.draws)]
    print(f"calibration: {len(cal)} scored cells at positions {args.calibration} of the sample (seed {args.sample_seed});"
          f" best-of-100 over {args.draws} overlapping draws; oracle {picks(cal_acc, cal_acc, draws).mean():.2f}")
    if skipped:
        print("rules without their inputs in the caches (not evaluated): " + ", ".join(skipped))
    base = picks(rule_scores(RULES["ensemble4 (no identity_gain)"], cal_z, 0.0), cal_acc, draws)
    print(f"{'rule':32s} {'cal best-of-100':>16s} {'d vs ens (2 se)':>17s} {'cal rho':>8s}")
    chosen, best = "ensemble4 (no identity_gain)", -np.inf
    for k, r in rules.items():
        s = rule_scores(r, cal_z, thr_for(r))
        p = picks(s, cal_acc, draws)
        d = p - base
        ok = np.isfinite(s)
        rho = float(spearmanr(s[ok], cal_acc[ok]).statistic)
        se2 = 2 * d.std(ddof=1) / np.sqrt(len(d))
        print(f"{k:32s} {p.mean():8.2f} ± {p.std():.2f} {d.mean():+8.3f} ({se2:.3f}) {rho:8.3f}")
        if k != "ensemble4 (no identity_gain)" and d.mean() > se2 and rho >= args.min_rho and p.mean() > best:
            chosen, best = k, p.mean()
    print(f"\nCHOSEN on the calibration cells: {chosen}")

    print("\nheld-out (reported, not used for the choice). Trials as bench/nb201_ranking.py's search table (numpy seed"
          f" {args.seed}; per N a permutation, disjoint blocks when N * 10 <= cells, else overlapping draws), over the"
          " held-out positions whose cells have the rule's inputs (disconnected cells included: never picked)")
    sets = {"1,000 held-out (positions 0:1200 less calibration)": ([i for i in order[:1200] if i not in cal_set], (100,)),
            "all cached held-out": ([i for i in order if i not in cal_set], (100, 1000))}
    for label, (pool, sizes) in sets.items():
        print(f"\n{label}")
        print(f"{'rule':32s} {'cells':>6s} {'rho':>6s} " + " ".join(
            f"{'best-of-' + str(N):>14s} {'params':>14s} {'oracle':>14s}" for N in sizes))
        for k, r in rules.items():
            cells = [i for i in pool if i in recs and (recs[i].get("error")
                     or all(m in recs[i]["values"] or m in recs[i].get("errors", {}) for m in r[1]))]
            if sum(not recs[i].get("error") for i in cells) < 200:
                continue  # the rule's inputs were not scored on these held-out cells
            t, acc = table(cells)
            s = rule_scores(r, zs(t), thr_for(r))
            ok = np.isfinite(s)
            rho = float(spearmanr(s[ok], acc[ok]).statistic)
            par = np.array([float(recs[i].get("params") or -np.inf) for i in cells])
            rng = np.random.default_rng(args.seed)
            out = [f"{k:32s} {len(cells):6d} {rho:6.3f}"]
            for N in sizes:
                perm = rng.permutation(len(cells))
                if len(cells) < 2 * N:
                    out.append(f"{'':>14s} {'':>14s} {'':>14s}")
                    continue
                trials = ([perm[j * N:(j + 1) * N] for j in range(10)] if 10 * N <= len(cells)
                          else [rng.choice(len(cells), N, replace=False) for _ in range(10)])
                for v in (picks(s, acc, trials), picks(par, acc, trials), picks(acc, acc, trials)):
                    out.append(f"{v.mean():7.2f} ± {v.std():.2f}")
            print(" ".join(out))

    print(f"\nthe chosen rule against the ensemble and params alone, held-out, {args.draws} overlapping draws per N"
          " (paired differences of the picks, mean and two standard errors treating the draws as independent)")
    for label, (pool, sizes) in sets.items():
        cells = [i for i in pool if i in recs]
        t, acc = table(cells)
        z = zs(t)
        cols = {"ensemble": rule_scores(RULES["ensemble4 (no identity_gain)"], z, 0.0),
                chosen: rule_scores(RULES[chosen], z, thr_for(RULES[chosen])),
                "params": np.array([float(recs[i].get("params") or -np.inf) for i in cells])}
        rng = np.random.default_rng(args.seed)
        for N in sizes:
            trials = [rng.choice(len(cells), N, replace=False) for _ in range(args.draws)]
            p = {k: picks(v, acc, trials) for k, v in cols.items()}
            d_e, d_p = p[chosen] - p["ensemble"], p[chosen] - p["params"]
            print(f"{label}, {len(cells)} cells, best-of-{N}: " + ", ".join(f"{k} {v.mean():.2f}" for k, v in p.items())
                  + f", oracle {picks(acc, acc, trials).mean():.2f}; chosen - ensemble {d_e.mean():+.3f}"
                  f" ({2 * d_e.std(ddof=1) / np.sqrt(len(d_e)):.3f}), chosen - params {d_p.mean():+.3f}"
                  f" ({2 * d_p.std(ddof=1) / np.sqrt(len(d_p)):.3f})")


if __name__ == "__main__":
    main()
