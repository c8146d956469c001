"""The pre-registered test of bench/results/nb201_fresh_preregistration.md: two search rules on fresh NB201 cells.

    .venv/bin/python bench/nb201_preregistered.py

Reads the per-cell caches of bench/nb201_ranking.py (no scoring): the main cache (positions 0:5931), the fresh
cache (positions 6100:8100: synflow, meco, meco_opt, swap, params, flops and the AZ-NAS terms) and the
identity_gain cache, merged by NB201 index. Rules, fixed in the pre-registration (z_m = (t_m(v_m) - mean_m) / std_m,
mean/std of the calibration cells, positions 300:500; t = log10 for synflow and swap):

    ensemble                     = sum_{m in synflow, meco, meco_opt, swap} log Phi(z_m)   (the shipped constants)
    ensemble + az_trainability   = ensemble + log Phi(z_az_trainability)
    ensemble + identity_gain     = ensemble + log Phi(z_identity_gain)

(`ensemble` here is the four-input score the pre-registration names; `ensemble + identity_gain` passed and is
the shipped `ensemble` since.) For each, on the fresh cells: Spearman rho and Kendall tau; best-of-100 over 10 disjoint trials (the first 1,000
fresh positions, blocks of 100 in position order) and over --draws seeded overlapping draws of all fresh cells,
with the paired difference to ensemble and to params (mean and two standard errors, treating the overlapping
draws as independent, which is optimistic); best-of-1,000 over --draws overlapping draws of the fresh cells and of
positions 1200:5931 + fresh (identity_gain's other never-explored cells). Next to: params alone (largest first),
a random pick and the oracle on the same trials. A cell that could not be scored (disconnected) is never picked.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import kendalltau, spearmanr

from nb201_search_rules import load, transform

HERE = Path(__file__).resolve().parent
ENS = ("synflow", "meco", "meco_opt", "swap")
RULES = {
    "ensemble": ENS,
    "ensemble + az_trainability": ENS + ("az_trainability",),
    "ensemble + identity_gain": ENS + ("identity_gain",),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(HERE / "results" / "nb201_cache_s4242.jsonl"))
    ap.add_argument("--fresh", default=str(HERE / "results" / "nb201_cache_fresh_s4242.jsonl"))
    ap.add_argument("--identity-gain", default=str(HERE / "results" / "nb201_identity_gain_s4242.jsonl"))
    ap.add_argument("--cells", default=str(HERE / "results" / "nb201_cells_s4242_all.txt"))
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=str(HERE.parent / ".." / "shared" / "data"))
    args = ap.parse_args()
    recs = load([Path(args.cache), Path(args.fresh), Path(args.identity_gain)])
    with open(Path(args.data_root) / "nas_bench_201" / "nats_tss_15625_test_acc.csv") as fh:
        acc_of = {i: float(r["CIFAR10TestAccuracy200Epochs"]) for i, r in enumerate(csv.DictReader(fh))}
    order = [int(x) for x in Path(args.cells).read_text().split("\n") if x.strip() and not x.startswith("#")]
    cal = [i for i in order[300:500] if i in recs and not recs[i].get("error")]
    names = sorted({m for ins in RULES.values() for m in ins} | {"params"})

    def column(cells: list[int], m: str) -> np.ndarray:
        return transform(m, np.array([recs[i]["values"].get(m, np.nan) if not recs[i].get("error") else np.nan
                                      for i in cells], float))

    norm = {m: (float(np.nanmean(column(cal, m))), float(np.nanstd(column(cal, m)))) for m in names}

    def scores(cells: list[int]) -> dict[str, np.ndarray]:
        z = {m: (column(cells, m) - norm[m][0]) / norm[m][1] for m in names}
        out = {k: np.asarray(sum(log_ndtr(z[m]) for m in ins), float) for k, ins in RULES.items()}
        out["params"] = column(cells, "params")
        return {k: np.where(np.isnan(v), -np.inf, v) for k, v in out.items()}

    def pick(s: np.ndarray, acc: np.ndarray, trials: np.ndarray) -> np.ndarray:
        return acc[trials[np.arange(len(trials)), np.argmax(s[trials], axis=1)]]

    def have(i: int, inputs) -> bool:
        r = recs.get(i)
        return r is not None and (bool(r.get("error")) or all(m in r["values"] or m in r.get("errors", {}) for m in inputs))

    every = tuple(names)
    fresh = [i for i in order[6100:8100] if have(i, every)]
    wide = [i for i in order[1200:5931] + order[6100:8100] if have(i, ENS + ("identity_gain", "params"))]
    print(f"calibration: {len(cal)} scored cells (positions 300:500); fresh: {len(fresh)} of positions 6100:8100 "
          f"with every input; positions 1200:5931 + fresh with the ensemble's inputs and identity_gain: {len(wide)}")
    print("constants (mean, std on the calibration cells): " + ", ".join(f"{m} ({a:.6g}, {b:.6g})" for m, (a, b) in norm.items()))

    acc = np.array([acc_of[i] for i in fresh])
    s = scores(fresh)
    ok = {k: np.isfinite(v) for k, v in s.items()}
    print(f"\nfresh cells, ranking ({len(fresh)} cells; unscorable cells left out of rho/tau)")
    for k, v in s.items():
        m = ok[k]
        print(f"  {k:28s} rho {spearmanr(v[m], acc[m]).statistic:.3f}  tau {kendalltau(v[m], acc[m]).statistic:.3f}")
    rng = np.random.default_rng(args.seed)
    first = np.array([j for j, i in enumerate(fresh) if i in set(order[6100:7100])])
    blocks = np.array([first[b * 100:(b + 1) * 100] for b in range(len(first) // 100)])
    over = np.array([rng.choice(len(fresh), 100, replace=False) for _ in range(args.draws)])
    print(f"\nfresh cells, best-of-100: {len(blocks)} disjoint trials (positions 6100:7100) | {args.draws} overlapping"
          " draws of all fresh cells, paired differences (2 se)")
    base = {k: pick(s[k], acc, over) for k in ("ensemble", "params")}
    for k in list(RULES) + ["params"]:
        d = pick(s[k], acc, blocks)
        o = pick(s[k], acc, over)
        diffs = "  ".join(f"- {b} {np.mean(o - base[b]):+.3f} ({2 * np.std(o - base[b], ddof=1) / np.sqrt(len(o)):.3f})"
                          for b in ("ensemble", "params") if b != k)
        print(f"  {k:28s} {d.mean():.2f} ± {d.std():.2f} | {o.mean():.2f} ± {o.std():.2f}  {diffs}")
    r = rng.integers(0, 100, size=len(blocks))
    print(f"  {'random':28s} {acc[blocks[np.arange(len(blocks)), r]].mean():.2f} | "
          f"{acc[over[np.arange(len(over)), rng.integers(0, 100, size=len(over))]].mean():.2f}")
    print(f"  {'oracle':28s} {acc[blocks].max(axis=1).mean():.2f} ± {acc[blocks].max(axis=1).std():.2f} | "
          f"{acc[over].max(axis=1).mean():.2f} ± {acc[over].max(axis=1).std():.2f}")

    for label, cells in (("fresh cells", fresh), ("positions 1200:5931 + fresh", wide)):
        a = np.array([acc_of[i] for i in cells])
        sc = scores(cells)
        tr = np.array([rng.choice(len(cells), 1000, replace=False) for _ in range(args.draws)])
        base = {k: pick(sc[k], a, tr) for k in ("ensemble", "params")}
        print(f"\n{label}, best-of-1,000 over {args.draws} overlapping draws of {len(cells)} cells (paired differences, 2 se)")
        for k in ("ensemble", "ensemble + identity_gain", "params"):
            if label != "fresh cells" and k not in sc:
                continue
            o = pick(sc[k], a, tr)
            diffs = "  ".join(f"- {b} {np.mean(o - base[b]):+.3f} ({2 * np.std(o - base[b], ddof=1) / np.sqrt(len(o)):.3f})"
                              for b in ("ensemble", "params") if b != k)
            print(f"  {k:28s} {o.mean():.2f} ± {o.std():.2f}  {diffs}")
        print(f"  {'oracle':28s} {a[tr].max(axis=1).mean():.2f} ± {a[tr].max(axis=1).std():.2f}")


if __name__ == "__main__":
    main()
