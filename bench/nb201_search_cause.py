"""Why a zero-cost score that ranks NAS-Bench-201 well does not pick better cells than #params at best-of-N.

    .venv/bin/python bench/nb201_search_cause.py bench/results/nb201_cache_s4242.jsonl

Reads the per-cell cache of bench/nb201_ranking.py (no scoring) and the CIFAR-10 200-epoch test accuracies, splits
the cells of random.Random(--sample-seed).sample(range(15625), 1200) into calibration (--calibration positions,
default 300:500) and held-out (the other positions), and prints for the held-out cells that have every proxy:

1. per proxy: Spearman rho on all cells and on the top decile by accuracy only (the region a best-of-N pick is
   decided in), the accuracy of the score's top-1 and the mean of its top-5, precision@5% (share of the score's top
   5 % that are in the true top 5 %), and best-of-100 (mean and std of the pick's accuracy over --draws seeded
   draws of 100 cells, overlapping);
2. what the picks are: median parameter count of each score's top decile, and the share of cells with a skip
   connection on the input->output edge (node 3 <- node 0) among the true top decile, the score's top decile and
   all cells;
3. candidate aggregations (a handful, fixed in CANDIDATES before looking at held-out search figures): the
   calibrated z-score sum sum_m log Phi((t_m - mean_m)/std_m) with or without a complexity member (log flops or log
   params), and AZ-NAS's set-level rank aggregation sum_m log(rank_m / N) over each draw's cells, with
   best-of-100 and rho on the calibration cells (the only figures a choice may use) and on the held-out cells.
mean_m/std_m come from the calibration cells. The rule: a candidate replaces `ensemble` only if its calibration
best-of-100 exceeds the ensemble's by more than two standard errors of the paired difference over the draws.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import rankdata, spearmanr

LOG = {"synflow", "params", "flops", "swap", "zico", "l2_norm", "snip", "grad_norm"}
ENS = ["synflow", "meco", "meco_opt", "swap"]
PROXIES = ["params", "synflow", "meco", "meco_opt", "swap", "zico", "naswot", "jacob_cov", "epe_nas", "l2_norm",
           "az_expressivity", "az_progressivity", "az_trainability", "snip", "grad_norm"]
# name -> ("z", inputs): calibrated z-score sum; ("rank", inputs): AZ-NAS rank aggregation over the draw
CANDIDATES = {
    "ensemble (current)": ("z", ENS),
    "ensemble + log flops": ("z", ENS + ["flops"]),
    "ensemble + log params": ("z", ENS + ["params"]),
    "rank(ensemble inputs)": ("rank", ENS),
    "rank(ensemble inputs + flops)": ("rank", ENS + ["flops"]),
    "z(synflow, meco, log flops)": ("z", ["synflow", "meco", "flops"]),
    "AZ-NAS (expr, prog, train, flops)": ("rank", ["az_expressivity", "az_progressivity", "az_trainability", "flops"]),
}


def skip_in_to_out(cell: str) -> bool:
    """True when node 3's edge from node 0 is skip_connect (NB201 cell string |a~0|+|b~0|c~1|+|d~0|e~1|f~2|)."""
    return cell.strip("|").split("|+|")[2].split("|")[0] == "skip_connect~0"


def table(path: Path, sample_seed: int, cal_positions: str, data_root: Path) -> tuple[list[dict], list[int], list[int]]:
    recs: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        recs[int(r["nb201_index"])] = r  # the last record of a cell wins (as in the bench)
    acc = {}
    with open(data_root / "nas_bench_201" / "nats_tss_15625_test_acc.csv") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            acc[i] = float(row["CIFAR10TestAccuracy200Epochs"])
    sample = random.Random(sample_seed).sample(range(15625), 1200)
    a, _, b = cal_positions.partition(":")
    cal_set = set(sample[int(a):int(b)])
    cal = [i for i in sample if i in cal_set]
    held = [i for i in sample if i not in cal_set]
    need = set(PROXIES) | {"flops"}

    def rows(cells: list[int]) -> list[dict]:
        out = []
        for i in cells:
            r = recs.get(i)
            if r is None or not (r.get("error") or need <= set(r["values"]) | set(r["errors"])):
                continue  # not scored (yet) for every proxy
            v = {} if r.get("error") else r["values"]
            out.append({"index": i, "acc": acc[i], "cell": r["spec"]["args"]["cell"], "values": v})
        return out

    return recs, rows(cal), rows(held)


def columns(rows: list[dict], names) -> dict[str, np.ndarray]:
    """Transformed values (log10 for LOG), NaN where missing (disconnected cells, a proxy's error)."""
    out = {}
    for n in names:
        v = np.array([r["values"].get(n, np.nan) for r in rows], dtype=float)
        if n in LOG:
            v = np.log10(np.where(v > 0, v, np.nan))
        out[n] = v
    return out


def zsum(cols: dict[str, np.ndarray], inputs, cal: dict[str, tuple[float, float]]) -> np.ndarray:
    t = np.zeros(len(next(iter(cols.values()))))
    for n in inputs:
        z = (cols[n] - cal[n][0]) / cal[n][1]
        t += np.where(np.isnan(z), -1e9, log_ndtr(np.nan_to_num(z)))
    return t


def rank_agg(cols: dict[str, np.ndarray], inputs, idx: np.ndarray) -> np.ndarray:
    t = np.zeros(len(idx))
    for n in inputs:
        v = np.where(np.isnan(cols[n][idx]), -np.inf, cols[n][idx])
        t += np.log(rankdata(v) / len(idx))
    return t


def draws(n: int, N: int, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n, N, replace=False) for _ in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache")
    ap.add_argument("--sample-seed", type=int, default=4242)
    ap.add_argument("--calibration", default="300:500", help="positions of the calibration cells in the sample")
    ap.add_argument("--draws", type=int, default=2000, help="seeded draws of N cells for best-of-N")
    ap.add_argument("--N", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = ap.parse_args()
    _, cal_rows, held_rows = table(Path(args.cache), args.sample_seed, args.calibration, Path(args.data_root))
    names = sorted(set(PROXIES) | {"flops"})
    C, H = columns(cal_rows, names), columns(held_rows, names)
    acc_c = np.array([r["acc"] for r in cal_rows])
    acc_h = np.array([r["acc"] for r in held_rows])
    calib = {n: (float(np.nanmean(C[n])), float(np.nanstd(C[n]))) for n in names}
    print(f"cells: {len(cal_rows)} calibration, {len(held_rows)} held-out (sample seed {args.sample_seed}); "
          f"best-of-{args.N} over {args.draws} seeded overlapping draws")

    # 1. where the ranking is good and where it is not (held-out)
    scores = {p: H[p] for p in PROXIES}
    scores["ensemble"] = zsum(H, ENS, calib)
    scores["oracle"] = acc_h
    top_dec = np.argsort(-acc_h)[: len(acc_h) // 10]
    top5 = set(np.argsort(-acc_h)[: len(acc_h) // 20].tolist())
    dr = draws(len(acc_h), args.N, args.draws, args.seed)
    print(f"\n1. held-out: rho on all cells and on the top decile by accuracy ({len(top_dec)} cells), the score's "
          f"top picks, best-of-{args.N}")
    print(f"{'score':<18} {'rho all':>8} {'rho top10%':>10} {'top-1':>6} {'top-5':>6} {'prec@5%':>8} "
          f"{'best-of-N':>13} {'med params top10%':>18}")
    params = np.array([r["values"].get("params", np.nan) for r in held_rows])
    for p, v in scores.items():
        s = np.where(np.isnan(v), -np.inf, v)
        ok = ~np.isnan(v)
        t = [k for k in top_dec if ok[k]]
        order = np.argsort(-s)
        picks = [acc_h[d][np.argmax(s[d])] for d in dr]
        prec = len(set(order[: len(top5)].tolist()) & top5) / len(top5)
        print(f"{p:<18} {spearmanr(v[ok], acc_h[ok]).statistic:>8.3f} {spearmanr(v[t], acc_h[t]).statistic:>10.3f} "
              f"{acc_h[order[0]]:>6.2f} {acc_h[order[:5]].mean():>6.2f} {prec:>8.2f} "
              f"{np.mean(picks):>7.2f}±{np.std(picks):.2f} {np.nanmedian(params[order[:len(top_dec)]]):>18,.0f}")

    # 2. what the best cells have that the scores' picks lack
    skip = np.array([skip_in_to_out(r["cell"]) for r in held_rows])
    print(f"\n2. skip_connect on the input->output edge: {skip.mean():.0%} of all held-out cells, "
          f"{skip[top_dec].mean():.0%} of the top decile by accuracy; of each score's top decile: " + ", ".join(
              f"{p} {skip[np.argsort(-np.where(np.isnan(scores[p]), -np.inf, scores[p]))[:len(top_dec)]].mean():.0%}"
              for p in ("ensemble", "params", "synflow", "meco")))
    with_skip = skip & ~np.isnan(params)
    print(f"   median params, top-decile cells with that skip: {np.median(params[top_dec][skip[top_dec]]):,.0f}; "
          f"without: {np.median(params[top_dec][~skip[top_dec]]):,.0f}; all cells with / without: "
          f"{np.median(params[with_skip]):,.0f} / {np.nanmedian(params[~skip]):,.0f}")

    # 3. candidate aggregations: calibration (for the choice) and held-out
    print(f"\n3. candidates: best-of-{args.N} (mean ± std over draws) and rho; calibration cells decide")
    print(f"{'candidate':<34} {'cal best-of-N':>14} {'cal rho':>8} {'d vs ens (2 se)':>17} {'held best-of-N':>15} "
          f"{'held rho':>9}")
    res = {}
    for split, cols, acc in (("cal", C, acc_c), ("held", H, acc_h)):
        drs = draws(len(acc), args.N, args.draws, args.seed + 1)
        for name, (kind, inputs) in CANDIDATES.items():
            full = zsum(cols, inputs, calib) if kind == "z" else rank_agg(cols, inputs, np.arange(len(acc)))
            picks = np.array([acc[d][np.argmax(full[d] if kind == "z" else rank_agg(cols, inputs, d))] for d in drs])
            res[(split, name)] = (picks, float(spearmanr(full, acc).statistic))
    base = res[("cal", "ensemble (current)")][0]
    for name in CANDIDATES:
        pc, rc = res[("cal", name)]
        ph, rh = res[("held", name)]
        d = pc - base
        # draws overlap, so the paired-difference standard error below is optimistic (a lower bound)
        se = float(np.std(d) / np.sqrt(len(d)))
        print(f"{name:<34} {pc.mean():>8.2f}±{pc.std():.2f} {rc:>8.3f} {d.mean():>+8.3f} ({2 * se:.3f}) "
              f"{ph.mean():>9.2f}±{ph.std():.2f} {rh:>9.3f}")
    oc = [acc_c[d].max() for d in draws(len(acc_c), args.N, args.draws, args.seed + 1)]
    oh = [acc_h[d].max() for d in draws(len(acc_h), args.N, args.draws, args.seed + 1)]
    print(f"{'oracle':<34} {np.mean(oc):>8.2f}±{np.std(oc):.2f} {'':>8} {'':>17} {np.mean(oh):>9.2f}±{np.std(oh):.2f}")


if __name__ == "__main__":
    main()
