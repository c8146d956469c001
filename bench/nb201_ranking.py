"""Rank NAS-Bench-201 cells with zero-cost proxies against 200-epoch CIFAR-10 test accuracy.

    flock /tmp/initscore-bench.lock .venv/bin/python bench/nb201_ranking.py --n 200 --seed 0

Samples --n cells (seeded, without replacement) from the 15,625 of NAS-Bench-201, draws
ONE batch of --batch-size real CIFAR-10 training images (seeded), builds each cell network
(`nb201`, PyTorch default init, torch seed = seed + position), scores every proxy with
`initscore.proxies.score_architectures`, and prints Spearman rho / Kendall tau against the
ground truth (`nas_bench_201/nats_tss_15625_test_acc.csv`, row i = index i) next to the
published anchors (Abdelfattah et al. ICLR 2021, all 15,625 cells), the pairwise agreement
of the synflow+jacob_cov+snip majority vote, the rank average of the ensemble inputs, and
timings: median seconds per architecture per proxy group, and on --timing-archs cells the
time of all proxies together against each proxy alone (medians of --timing-repeats interleaved
repeats per cell). Writes --json.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ANCHORS = {"synflow": 0.74, "jacob_cov": 0.73, "snip": 0.60, "grad_norm": 0.59, "grasp": 0.51, "fisher": 0.36}
VOTE = ("synflow", "jacob_cov", "snip")
VOTE_ANCHOR = 0.82


def read_ground_truth(root: Path) -> tuple[list[str], np.ndarray]:
    path = root / "nas_bench_201" / "nats_tss_15625_test_acc.csv"
    if not path.is_file():
        sys.exit(f"error: ground truth not found at {path}; pass --data-root")
    cells, acc = [], []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            cells.append(row["ArchitectureString"])
            acc.append(float(row["CIFAR10TestAccuracy200Epochs"]))
    return cells, np.asarray(acc)


def load_batch(root: Path, batch_size: int, seed: int):
    from initscore import data

    td = data.load({"kind": "cifar10", "root": str(root / "cifar10_jpeg"), "split": "train", "limit": 4096, "seed": seed})
    return td.batch(batch_size, seed)


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD_OURS = (0.2470, 0.2435, 0.2616)  # initscore.data's CIFAR-10 statistics
CIFAR_STD_ZC = (0.2023, 0.1994, 0.2010)  # zero-cost-nas foresight/dataset.py


def reference_batches(x, y, batch_size: int, n: int, seed: int):
    """n batches as zero-cost-nas draws them: a fresh shuffled batch per architecture (a new iterator over a
    shuffled train loader, foresight/pruners/p_utils.py get_some_data), RandomCrop(32, padding=4) with black
    padding + RandomHorizontalFlip, normalized with their std (0.2023, 0.1994, 0.2010)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    raw = x * torch.tensor(CIFAR_STD_OURS).view(1, 3, 1, 1) + mean  # back to [0, 1]
    std_zc = torch.tensor(CIFAR_STD_ZC).view(1, 3, 1, 1)
    H, W = x.shape[2], x.shape[3]
    for _ in range(n):
        idx = torch.randperm(x.shape[0], generator=g)[:batch_size]
        padded = torch.nn.functional.pad(raw[idx], (4, 4, 4, 4))
        out = torch.empty((batch_size, 3, H, W))
        offs = torch.randint(0, 9, (batch_size, 2), generator=g)
        flips = torch.rand(batch_size, generator=g) < 0.5
        for k in range(batch_size):
            i, j = int(offs[k, 0]), int(offs[k, 1])
            img = padded[k, :, i:i + H, j:j + W]
            out[k] = img.flip(-1) if flips[k] else img
        yield (out - mean) / std_zc, y[idx]


def bootstrap_ci(a: np.ndarray, b: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% CI of Spearman rho over architectures resampled with replacement."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    n = len(a)
    out = []
    for _ in range(reps):
        k = rng.integers(0, n, n)
        ra, rb = rankdata(a[k]), rankdata(b[k])
        out.append(np.corrcoef(ra, rb)[0, 1])
    lo, hi = np.nanpercentile(out, [2.5, 97.5])
    return float(lo), float(hi)


def vote_agreement(scores: dict[str, np.ndarray], acc: np.ndarray, names=VOTE) -> float:
    """Fraction of pairs (i, j) with different accuracies where the majority sign of the proxies' differences is right."""
    agree = total = 0
    n = len(acc)
    for i, j in itertools.combinations(range(n), 2):
        if acc[i] == acc[j]:
            continue
        votes = sum(np.sign(scores[p][i] - scores[p][j]) for p in names)
        total += 1
        agree += int(np.sign(votes) == np.sign(acc[i] - acc[j]))
    return agree / total if total else float("nan")


def rank_average(scores: dict[str, np.ndarray], names) -> np.ndarray:
    from scipy.stats import rankdata

    return np.mean([rankdata(scores[p]) for p in names], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--proxies", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--timing-archs", type=int, default=3, help="cells on which each proxy is also timed alone")
    ap.add_argument("--timing-repeats", type=int, default=3,
                    help="interleaved repeats of the alone/together timings per cell; medians are used")
    ap.add_argument("--variant", default="official", choices=("official", "zero_cost_nas"),
                    help="nb201 variant: official TinyNetwork, or the zero-cost-nas model of the published anchors")
    ap.add_argument("--reference-data", action="store_true",
                    help="zero-cost-nas data protocol: a fresh augmented batch per architecture, their normalization")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CI of rho (0: none)")
    ap.add_argument("--json", default="bench/results/nb201_ranking.json")
    args = ap.parse_args()

    import torch
    from scipy.stats import kendalltau, spearmanr

    from initscore import proxies

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    names = list(proxies.PROXIES) if args.proxies == "all" else [p.strip() for p in args.proxies.split(",") if p.strip()]
    root = Path(args.data_root)
    cells, acc_all = read_ground_truth(root)
    if not 1 <= args.n <= len(cells):
        sys.exit(f"error: --n must be in 1..{len(cells)}")
    idx = np.random.default_rng(args.seed).choice(len(cells), size=args.n, replace=False)
    x, y = load_batch(root, args.batch_size, args.seed)
    vargs = {} if args.variant == "official" else {"variant": args.variant}
    specs = [{"arch": "nb201", "args": {"cell": cells[i], **vargs}} for i in idx]

    t_start = time.perf_counter()

    def progress(i: int, total: int, row) -> None:
        if (i + 1) % 10 == 0 or i + 1 == total:
            print(f"  [{i + 1}/{total}] {time.perf_counter() - t_start:.0f}s", file=sys.stderr, flush=True)

    if args.reference_data:
        from initscore import data

        td = data.load({"kind": "cifar10", "root": str(root / "cifar10_jpeg"), "split": "train", "limit": 10000,
                        "seed": args.seed})
        rows = []
        for i, (spec, b) in enumerate(zip(specs, reference_batches(td.x, td.y, args.batch_size, len(specs), args.seed))):
            (row,) = proxies.score_architectures([spec], b, names, seed=args.seed + i)  # model seed = seed + i
            rows.append(row)
            progress(i, len(specs), row)
    else:
        rows = proxies.score_architectures(specs, (x, y), names, progress=progress, seed=args.seed)
    wall = time.perf_counter() - t_start
    acc = acc_all[idx]

    # ---- correlations
    table = []
    scores: dict[str, np.ndarray] = {}
    for p in names:
        ok = [k for k, r in enumerate(rows) if r.ok and p in r.values]
        vals = np.array([rows[k].values[p] for k in ok])
        if len(ok) >= 3:
            scores[p] = np.full(len(rows), np.nan)
            scores[p][ok] = vals
            rho = float(spearmanr(vals, acc[ok]).statistic)
            tau = float(kendalltau(vals, acc[ok]).statistic)
        else:
            rho = tau = float("nan")
        # variant: architectures whose proxy errored (degenerate cells) ranked last
        if 0 < len(ok) < len(rows):
            filled = np.full(len(rows), -np.inf)
            filled[ok] = vals
            rho_last = float(spearmanr(filled, acc).statistic)
        else:
            rho_last = rho
        ci = bootstrap_ci(vals, acc[ok], args.bootstrap, args.seed) if args.bootstrap and len(ok) >= 3 else None
        table.append({"proxy": p, "n_ok": len(ok), "errors": len(rows) - len(ok), "spearman": rho, "kendall": tau,
                      "spearman_errors_last": rho_last, "anchor": ANCHORS.get(p), "spearman_ci95": ci})
    all_ok = [k for k in range(len(rows)) if all(not np.isnan(scores.get(p, np.array([np.nan] * len(rows)))[k]) for p in VOTE)]
    vote = (vote_agreement({p: scores[p][all_ok] for p in VOTE}, acc[all_ok])
            if all(p in scores for p in VOTE) and len(all_ok) > 2 else None)
    from initscore.proxies.ensemble import INPUTS

    rankavg = None
    if all(p in scores for p in INPUTS):
        ok = [k for k in range(len(rows)) if all(not np.isnan(scores[p][k]) for p in INPUTS)]
        ra = rank_average({p: scores[p][ok] for p in INPUTS}, INPUTS)
        rankavg = {"inputs": list(INPUTS), "spearman": float(spearmanr(ra, acc[ok]).statistic),
                   "kendall": float(kendalltau(ra, acc[ok]).statistic), "n_ok": len(ok)}

    # ---- timings: median seconds per architecture per proxy group (from the full run)
    group_times: dict[str, list[float]] = {}
    for r in rows:
        for g, s in r.timings.items():
            group_times.setdefault(g, []).append(s)
    per_arch = statistics.median(r.seconds for r in rows if r.ok) if any(r.ok for r in rows) else float("nan")

    # ---- all together vs each alone, on the first --timing-archs cells
    timing = []
    for k in range(min(args.timing_archs, len(specs))):
        from initscore import models

        torch.manual_seed(10_000 + k)
        model = models.build(specs[k])
        own = [p for p in names if p not in ("gradcosine", "gradnorm")]
        runs: dict[str, list[float]] = {}

        def timed(key: str, which: list[str]) -> None:
            t0 = time.perf_counter()
            proxies.compute_many(which, model, (x, y))
            runs.setdefault(key, []).append(time.perf_counter() - t0)

        for _ in range(max(1, args.timing_repeats)):  # interleaved, so slow phases of the machine hit all alike
            for p in names:
                timed(p, [p])
            timed("together", names)
            if own != names and own:
                timed("together_own", own)
        med = {key: statistics.median(v) for key, v in runs.items()}
        alone = {p: med[p] for p in names}
        together = med["together"]
        slow = max(alone, key=alone.get)
        entry = {"cell": specs[k]["args"]["cell"], "together_s": together, "alone_s": alone,
                 "slowest": slow, "ratio": together / alone[slow], "repeats": max(1, args.timing_repeats)}
        if "together_own" in med:
            entry["together_own_s"] = med["together_own"]
            entry["slowest_own"] = max(own, key=alone.get)
            entry["ratio_own"] = entry["together_own_s"] / alone[entry["slowest_own"]]
        timing.append(entry)
        del model

    # ---- print
    print(f"\nNAS-Bench-201 CIFAR-10: n={args.n} cells, seed={args.seed}, batch={args.batch_size} CIFAR-10 train images, "
          f"torch threads={torch.get_num_threads()}, wall {wall:.0f}s, nb201 variant {args.variant}, "
          f"{'zero-cost-nas data protocol (fresh augmented batch per cell)' if args.reference_data else 'one shared batch'}")
    print(f"{'proxy':<11} {'rho':>7} {'95% CI':>15} {'tau':>7} {'anchor':>7} {'|d|':>6} {'errors':>6} {'rho_el':>7} {'s/arch':>8}")
    for t in table:
        g = next((g for g in group_times if t["proxy"] in g.split("+")), None)
        sec = statistics.median(group_times[g]) if g else float("nan")
        d = f"{abs(t['spearman'] - t['anchor']):.3f}" if t["anchor"] is not None else ""
        anc = f"{t['anchor']:.2f}" if t["anchor"] is not None else ""
        t["seconds_per_arch_group"] = sec
        ci = f"[{t['spearman_ci95'][0]:.3f},{t['spearman_ci95'][1]:.3f}]" if t["spearman_ci95"] else ""
        print(f"{t['proxy']:<11} {t['spearman']:>7.3f} {ci:>15} {t['kendall']:>7.3f} {anc:>7} {d:>6} {t['errors']:>6} {t['spearman_errors_last']:>7.3f} {sec:>8.3f}")
    if vote is not None:
        print(f"vote synflow+jacob_cov+snip pairwise agreement: {vote:.3f} (published {VOTE_ANCHOR:.2f})")
    if rankavg is not None:
        print(f"rank average of {'+'.join(INPUTS)}: rho {rankavg['spearman']:.3f} tau {rankavg['kendall']:.3f}")
    print(f"median seconds per architecture (all requested proxies): {per_arch:.2f}")
    print("proxy groups, median s/arch: " + ", ".join(f"{g}={statistics.median(v):.3f}" for g, v in group_times.items()))
    for t in timing:
        print(f"timing {t['cell']}: together {t['together_s']:.2f}s, slowest alone {t['slowest']} "
              f"{t['alone_s'][t['slowest']]:.2f}s, ratio {t['ratio']:.2f}"
              + (f"; without gradcosine/gradnorm: together {t['together_own_s']:.2f}s vs {t['slowest_own']} "
                 f"{t['alone_s'][t['slowest_own']]:.2f}s, ratio {t['ratio_own']:.2f}" if "ratio_own" in t else ""))
    if timing:
        print(f"median together/slowest-alone ratio: {statistics.median(t['ratio'] for t in timing):.2f} (target < 2)")
        if all("ratio_own" in t for t in timing):
            print(f"  without the engine's gradcosine/gradnorm: {statistics.median(t['ratio_own'] for t in timing):.2f}")

    out = {"command": " ".join(sys.argv), "n": args.n, "seed": args.seed, "batch_size": args.batch_size,
           "variant": args.variant, "reference_data": args.reference_data,
           "indices": [int(i) for i in idx], "table": table, "vote_agreement": vote, "rank_average": rankavg,
           "wall_s": wall, "median_s_per_arch": per_arch, "timing": timing,
           "rows": [{**r.to_dict(), "nb201_index": int(i), "test_acc": float(a)} for r, i, a in zip(rows, idx, acc)]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
