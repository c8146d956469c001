"""Why a zero-cost score that ranks NAS-Bench-201 well does not pick better cells than #params at best-of-N.

The scores here are those before identity_gain: `ensemble` in this file is the four-input ensemble shipped until the
pre-registered test of bench/nb201_preregistered.py added identity_gain (the cause found in section 2 led to it).

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
   best-of-100 and rho on the calibration cells (the only figures a choice may use) and on the held-out cells;
4. the ceiling: (a) the whole space's top (cells >= 93.7 / 94.0 %, share of its top 1 % with that skip); (b) the
   best-of-N a score would reach if its errors were homogeneous, i.e. a Gaussian copula with Spearman rho against
   accuracy over all 15,625 cells (Pearson 2 sin(pi rho / 6) on normal scores), the model under which rho ~ 0.90 is
   enough for the issue's targets; (c) what a rule FITTED ON GROUND TRUTH could do with these inputs (the issue
   forbids it; a zero-cost rule of the same inputs is not expected to beat it): the held-out cells in two halves,
   on one half the weights of a linear combination of every proxy's z (and, separately, plus the skip indicator,
   an NB201-only structural prior) maximizing best-of-N (smooth soft-argmax surrogate, Powell from --restarts starts), then the real
   best-of-N in-sample and on the other half. The optimizer can miss the optimum: a best found, not a proof.
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
from scipy.optimize import minimize
from scipy.special import log_ndtr
from scipy.stats import norm, rankdata, spearmanr

LOG = {"synflow", "params", "flops", "swap", "zico", "l2_norm", "snip", "grad_norm"}
ENS = ["synflow", "meco", "meco_opt", "swap"]
PROXIES = ["params", "synflow", "meco", "meco_opt", "swap", "zico", "naswot", "jacob_cov", "epe_nas", "l2_norm",
           "az_expressivity", "az_progressivity", "az_trainability", "snip", "grad_norm"]
# name -> ("z", inputs): calibrated z-score sum; ("rank", inputs): AZ-NAS rank aggregation over the draw
CANDIDATES = {
    "ensemble4 (no identity_gain)": ("z", ENS),
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
    ap.add_argument("--restarts", type=int, default=6, help="starts of the in-sample fit of section 4")
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
    base = res[("cal", "ensemble4 (no identity_gain)")][0]
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

    ceiling(Path(args.data_root), H, calib, acc_h, skip, args)


def soft_pick(score: np.ndarray, acc: np.ndarray, idx: np.ndarray, temperature: float) -> float:
    """Mean over draws (rows of idx) of the soft-argmax-weighted accuracy: a smooth stand-in for best-of-N."""
    s = score[idx] / (np.std(score) + 1e-12) / temperature
    w = np.exp(s - s.max(axis=1, keepdims=True))
    return float(((w * acc[idx]).sum(axis=1) / w.sum(axis=1)).mean())


def ceiling(data_root: Path, H: dict[str, np.ndarray], calib, acc_h: np.ndarray, skip: np.ndarray, args) -> None:
    with open(data_root / "nas_bench_201" / "nats_tss_15625_test_acc.csv") as fh:
        space = [(float(r["CIFAR10TestAccuracy200Epochs"]), r["ArchitectureString"]) for r in csv.DictReader(fh)]
    acc_all = np.array([a for a, _ in space])
    top1 = np.argsort(-acc_all)[: len(acc_all) // 100]
    print(f"\n4. ceiling\n(a) the space: {int((acc_all >= 93.7).sum())} of {len(acc_all)} cells >= 93.7 %, "
          f"{int((acc_all >= 94.0).sum())} >= 94.0 %; skip on the input->output edge in "
          f"{np.mean([skip_in_to_out(space[i][1]) for i in top1]):.0%} of the top 1 % ({len(top1)} cells) and in "
          f"{np.mean([skip_in_to_out(c) for _, c in space]):.0%} of all cells")
    rng = np.random.default_rng(args.seed)
    zn = norm.ppf((rankdata(acc_all) - 0.5) / len(acc_all))
    sizes = (100, 1000)
    idx = {N: np.array([rng.choice(len(acc_all), N, replace=False) for _ in range(args.draws)]) for N in sizes}
    print("(b) best-of-N if the errors were homogeneous (Gaussian copula over all cells, "
          f"{args.draws} draws):")
    for rho in (0.75, 0.85, 0.90, 0.935, 0.95, 0.99, 1.0):
        r = 2 * np.sin(np.pi * rho / 6)
        noisy = r * zn + np.sqrt(max(0.0, 1 - r * r)) * rng.standard_normal(len(zn))
        print(f"    rho {rho:5.3f}: " + ", ".join(
            f"best-of-{N} {acc_all[idx[N][np.arange(len(idx[N])), np.argmax(noisy[idx[N]], axis=1)]].mean():.2f}"
            for N in sizes))
    inputs = sorted(set(PROXIES) | {"flops"})
    Z = np.column_stack([np.nan_to_num((H[n] - calib[n][0]) / calib[n][1], nan=-10.0) for n in inputs])
    halves = np.array_split(np.random.default_rng(args.seed + 3).permutation(len(acc_h)), 2)

    def fit(X: np.ndarray, cells: np.ndarray) -> np.ndarray:
        a = acc_h[cells]
        fit_d = np.array(draws(len(cells), args.N, 500, args.seed + 4))
        best_w, best = None, -np.inf
        starts = [np.eye(X.shape[1])[inputs.index("params")]] + [
            np.random.default_rng(args.seed + k).standard_normal(X.shape[1]) for k in range(args.restarts)]
        for w0 in starts:
            for temperature in (0.05, 0.02):
                w = minimize(lambda w: -soft_pick(X[cells] @ w, a, fit_d, temperature), w0, method="Powell",
                             options={"maxiter": 4000, "xtol": 1e-3, "ftol": 1e-6}).x
                got = float(a[fit_d[np.arange(len(fit_d)), np.argmax((X[cells] @ w)[fit_d], axis=1)]].mean())
                if got > best:
                    best_w, best = w, got
                w0 = w
        return best_w

    def real(score: np.ndarray, cells: np.ndarray) -> float:
        d = np.array(draws(len(cells), args.N, args.draws, args.seed + 2))
        a, s = acc_h[cells], score[cells]
        return float(a[d[np.arange(len(d)), np.argmax(s[d], axis=1)]].mean())

    ens = zsum(H, ENS, calib)
    print(f"(c) weights fitted on ground truth (NOT zero-cost): the {len(acc_h)} held-out cells in two halves; fit on"
          f" one, best-of-{args.N} over {args.draws} draws on each half (mean of the two halves)")
    print(f"    {'':<30} {'in-sample':>10} {'other half':>11}")
    for label, score in (("oracle", acc_h), ("ensemble", ens), ("params", Z[:, inputs.index("params")])):
        v = np.mean([real(score, h) for h in halves])
        print(f"    {label:<30} {v:>10.2f} {v:>11.2f}")
    for label, X in ((f"every proxy ({len(inputs)})", Z), ("every proxy + skip indicator", np.column_stack([Z, skip]))):
        ins, out = [], []
        for k in (0, 1):
            w = fit(X, halves[k])
            ins.append(real(X @ w, halves[k]))
            out.append(real(X @ w, halves[1 - k]))
        print(f"    {label:<30} {np.mean(ins):>10.2f} {np.mean(out):>11.2f}")


if __name__ == "__main__":
    main()
