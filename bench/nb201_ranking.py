"""Rank NAS-Bench-201 cells with zero-cost proxies against 200-epoch test accuracy (CIFAR-10 by default).

    flock /tmp/initscore-bench.lock .venv/bin/python bench/nb201_ranking.py --n 200 --seed 0

Samples --n cells (seeded, without replacement) from the 15,625 of NAS-Bench-201, draws
ONE batch of --batch-size real CIFAR-10 training images (seeded), builds each cell network
(`nb201`, PyTorch default init, torch seed = seed + position), scores every proxy with
`initscore.proxies.score_architectures`, and prints Spearman rho / Kendall tau (bootstrap 95% CIs of both) against the
ground truth (`nas_bench_201/nats_tss_15625_test_acc.csv`, row i = index i) next to the
published anchors (Abdelfattah et al. ICLR 2021, all 15,625 cells), the pairwise agreement
of the synflow+jacob_cov+snip majority vote, the rank average of the ensemble inputs, and
timings: median seconds per architecture per proxy group, and on --timing-archs cells the
time of all proxies together against each proxy alone (medians of --timing-repeats interleaved
repeats per cell). Writes --json (default runs/nb201_ranking.json, git-ignored, so a quick run never
overwrites the committed results in bench/results/).

Cells: --sample-seed S draws random.Random(S).sample(range(15625), n) (--seed's numpy draw otherwise),
--cells FILE names them (NB201 indices or cell strings), --positions keeps slices of the sample (so
calibration cells can be excluded). --cache FILE keeps every cell's values in a JSONL file, appended as
cells finish, so a killed run resumes and the tables are recomputed (--cached-only) without rescoring;
--score-only fills the cache and stops. The search table (--search-n, --search-trials) gives the accuracy
of each score's best-of-N pick next to params alone, random and the oracle; AZ-NAS's set-level rank
aggregation (az_nas) is a row when its four inputs are computed.
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

# Published |Spearman rho| over all 15,625 cells (zero-cost-nas notebooks/nasbench201_correlations.ipynb, Table 1;
# the issue quotes the CIFAR-10 row rounded). Their ground truth: get_more_info(i, 'cifar10-valid' for CIFAR-10,
# else the dataset itself, hp='200')['test-accuracy'] -- for CIFAR-100 and ImageNet16-120 that is exactly the
# column of our table; for CIFAR-10 our column is the 'cifar10' (train+valid) network's accuracy instead.
ANCHORS_BY_DATASET = {
    "cifar10": {"synflow": 0.737, "jacob_cov": 0.731, "snip": 0.596, "grad_norm": 0.594, "grasp": 0.514, "fisher": 0.36},
    "cifar100": {"synflow": 0.763, "jacob_cov": 0.704, "snip": 0.637, "grad_norm": 0.637, "grasp": 0.547, "fisher": 0.385},
    "ImageNet16-120": {"synflow": 0.751, "jacob_cov": 0.701, "snip": 0.578, "grad_norm": 0.578, "grasp": 0.549,
                       "fisher": 0.327},
}
VOTE = ("synflow", "jacob_cov", "snip")
VOTE_ANCHOR = {"cifar10": 0.817, "cifar100": 0.832, "ImageNet16-120": 0.813}
# dataset -> (ground-truth column, classes, image side); the ground truth is the 200-epoch test accuracy
DATASETS = {
    "cifar10": ("CIFAR10TestAccuracy200Epochs", 10, 32),
    "cifar100": ("CIFAR100TestAccuracy200Epochs", 100, 32),
    "ImageNet16-120": ("ImageNetTestAccuracy200Epochs", 120, 16),
}
# proxies that read only the batch's shape (synflow: all-ones input; zen, AZ-NAS: Gaussian inputs; params; flops)
DATA_FREE = ("synflow", "zen", "params", "flops", "l2_norm", "az_expressivity", "az_progressivity", "az_trainability")


def read_ground_truth(root: Path, column: str = "CIFAR10TestAccuracy200Epochs") -> tuple[list[str], np.ndarray]:
    path = root / "nas_bench_201" / "nats_tss_15625_test_acc.csv"
    if not path.is_file():
        sys.exit(f"error: ground truth not found at {path}; pass --data-root")
    cells, acc = [], []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            cells.append(row["ArchitectureString"])
            acc.append(float(row[column]))
    return cells, np.asarray(acc)


def foolbox_cifar100(path: Path):
    """The 20 real CIFAR-100 test images that ship in the foolbox wheel (foolbox/data/cifar100_NN_LABEL.png, fine
    labels), read from the wheel (a zip) or an unpacked folder, normalized with initscore.data's CIFAR-100 statistics.
    Get the wheel without installing it: pip download --no-deps foolbox==3.3.4 -d /tmp/fb"""
    import io
    import re
    import zipfile

    import torch
    from PIL import Image

    from initscore.data.readers import CIFAR100_MEAN, CIFAR100_STD

    pat = re.compile(r"(?:^|/)cifar100_(\d+)_(\d+)\.png$")
    blobs: list[tuple[int, int, bytes]] = []
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                m = pat.search(name)
                if m:
                    blobs.append((int(m[1]), int(m[2]), z.read(name)))
    elif path.is_dir():
        for f in path.rglob("cifar100_*.png"):
            m = pat.search(f.as_posix())
            if m:
                blobs.append((int(m[1]), int(m[2]), f.read_bytes()))
    if not blobs:
        sys.exit(f"error: no foolbox CIFAR-100 images (cifar100_NN_LABEL.png) in {path}")
    blobs.sort()
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32).copy())
                     for _, _, b in blobs]).permute(0, 3, 1, 2) / 255.0
    mean, std = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.tensor([lab for _, lab, _ in blobs], dtype=torch.long), mean, std


def load_batch(root: Path, batch_size: int, seed: int):
    from initscore import data

    td = data.load({"kind": "cifar10", "root": str(root / "cifar10_jpeg"), "split": "train", "limit": 4096, "seed": seed})
    return td.batch(batch_size, seed)


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD_OURS = (0.2470, 0.2435, 0.2616)  # initscore.data's CIFAR-10 statistics
CIFAR_STD_ZC = (0.2023, 0.1994, 0.2010)  # zero-cost-nas foresight/dataset.py


def reference_batches(x, y, batch_size: int, n: int, seed: int, mean=None, std=None, std_zc=None):
    """n batches as zero-cost-nas draws them: a fresh shuffled batch per architecture (a new iterator over a
    shuffled train loader, foresight/pruners/p_utils.py get_some_data), RandomCrop(32, padding=4) with black
    padding + RandomHorizontalFlip, normalized with their std (CIFAR-10: (0.2023, 0.1994, 0.2010)).
    x is normalized with (mean, std) (default: initscore.data's CIFAR-10 statistics); std_zc is the reference's."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1) if mean is None else mean
    std = torch.tensor(CIFAR_STD_OURS).view(1, 3, 1, 1) if std is None else std
    raw = x * std + mean  # back to [0, 1]
    std_zc = torch.tensor(CIFAR_STD_ZC).view(1, 3, 1, 1) if std_zc is None else std_zc
    batch_size = min(batch_size, x.shape[0])
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


def bootstrap_ci(a: np.ndarray, b: np.ndarray, reps: int = 1000, seed: int = 0):
    """Percentile 95% CIs of Spearman rho and of Kendall tau (tau-b) over the same resamples of the architectures
    (with replacement): ((rho_lo, rho_hi), (tau_lo, tau_hi))."""
    from scipy.stats import kendalltau, rankdata

    rng = np.random.default_rng(seed)
    n = len(a)
    rho, tau = [], []
    for _ in range(reps):
        k = rng.integers(0, n, n)
        ra, rb = rankdata(a[k]), rankdata(b[k])
        rho.append(np.corrcoef(ra, rb)[0, 1])
        tau.append(kendalltau(a[k], b[k]).statistic)
    (lo, hi), (tlo, thi) = np.nanpercentile(rho, [2.5, 97.5]), np.nanpercentile(tau, [2.5, 97.5])
    return (float(lo), float(hi)), (float(tlo), float(thi))


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


def select_cells(args, cells: list[str]) -> list[int]:
    """NB201 indices to score: --cells FILE, or a seeded sample (--sample-seed: Python's random, else numpy --seed),
    then --positions."""
    if args.cells:
        pos = {c: i for i, c in enumerate(cells)}
        idx = []
        for k, line in enumerate(Path(args.cells).read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.isdigit() and int(line) < len(cells):
                idx.append(int(line))
            elif line in pos:
                idx.append(pos[line])
            else:
                sys.exit(f"error: --cells line {k}: {line[:80]!r} is neither an NB201 index nor a cell string of the table")
    else:
        if not 1 <= args.n <= len(cells):
            sys.exit(f"error: --n must be in 1..{len(cells)}")
        if args.sample_seed is not None:
            import random

            idx = random.Random(args.sample_seed).sample(range(len(cells)), args.n)
        else:
            idx = [int(i) for i in np.random.default_rng(args.seed).choice(len(cells), size=args.n, replace=False)]
    if args.positions:
        keep: list[int] = []
        for part in args.positions.split(","):
            a, _, b = part.partition(":")
            keep.extend(idx[int(a or 0):int(b) if b else len(idx)])
        idx = keep
    if not idx:
        sys.exit("error: no cells selected")
    return idx


def score_with_cache(path: Path, specs, idx: list[int], batch, names, seed: int, progress, cached_only: bool = False):
    """Rows for specs, reading finished cells from the JSONL cache and appending the others as they finish.

    A cached cell that lacks some of `names` is scored for the missing ones only (same spec seed, so the same
    weights) and its record is extended; the last record of a cell in the file wins."""
    from initscore.proxies import ArchScores
    from initscore.proxies.batch import iter_architectures

    done: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that cell is rescored
            done[int(rec["nb201_index"])] = rec

    from initscore.proxies.ensemble import INPUTS, ensemble_score

    def have(rec: dict) -> set[str]:
        h = set(rec.get("values", {})) | set(rec.get("errors", {}))
        if all(n in h for n in INPUTS):  # the ensemble is arithmetic on its cached inputs: never rescored
            h.add("ensemble")
        return h

    def missing(i: int) -> tuple[str, ...]:
        rec = done.get(i)
        if rec is None:
            return tuple(names)
        if rec.get("error"):
            return ()
        return tuple(n for n in names if n not in have(rec))

    if cached_only:
        keep = [k for k, i in enumerate(idx) if i in done and not missing(i)]
        print(f"--cached-only: {len(keep)} of {len(idx)} cells are in the cache", file=sys.stderr)
        idx[:] = [idx[k] for k in keep]
        specs[:] = [specs[k] for k in keep]
    plan: dict[tuple[str, ...], list[int]] = {}
    for k, i in enumerate(idx):
        m = missing(i)
        if m:
            plan.setdefault(m, []).append(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_todo = sum(len(v) for v in plan.values())
    n_done = 0
    with path.open("a") as fh:
        for want, todo in plan.items():
            for row in iter_architectures([specs[k] for k in todo], batch, list(want), seed=seed):
                k = todo[row.index]
                new = {**row.to_dict(), "nb201_index": idx[k]}
                old = done.get(idx[k])
                if old is not None and not row.error:
                    new = {**old, "values": {**old["values"], **new["values"]}, "errors": {**old["errors"], **new["errors"]},
                           "timings": {**old.get("timings", {}), **new["timings"]}, "seconds": old["seconds"] + new["seconds"]}
                fh.write(json.dumps(new) + "\n")
                fh.flush()
                done[idx[k]] = new
                progress(n_done, n_todo, row)
                n_done += 1
    rows = []
    for k, i in enumerate(idx):
        r = done[i]
        if "ensemble" in names and not r.get("error") and "ensemble" not in r["values"] and "ensemble" not in r["errors"]:
            if all(n in r["values"] for n in INPUTS):
                r["values"]["ensemble"] = ensemble_score(r["values"])
            else:
                r["errors"]["ensemble"] = "inputs errored: " + ", ".join(n for n in INPUTS if n not in r["values"])
        rows.append(ArchScores(k, r["spec"], {n: v for n, v in r["values"].items() if n in names},
                               {n: v for n, v in r["errors"].items() if n in names}, r.get("params"), r["seconds"],
                               r.get("timings", {}), r.get("error"), r.get("seed")))
    return rows


def search_table(rows, scores: dict[str, np.ndarray], acc: np.ndarray, sizes: list[int], trials: int, seed: int) -> list[dict]:
    """Best-of-N: per trial, N cells of the sample; each proxy picks its highest-scoring cell (errors never picked
    unless all error); the accuracy of the pick, mean and std over trials, next to params alone (the parameter count,
    free), random (the mean accuracy of the trial's cells = a random pick's expectation) and the oracle (the best).
    Trials are disjoint blocks of a seeded permutation when N * trials <= cells, else seeded draws that overlap.
    Set-level scores (az_nas) are recomputed on each trial's cells."""
    from initscore.proxies.aggregate import AZ_NAS_INPUTS, log_rank_aggregate

    n = len(rows)
    rng = np.random.default_rng(seed)
    params = np.array([float(r.params) if r.params is not None else -np.inf for r in rows])
    out = []
    for N in sizes:
        if N > n:
            continue
        disjoint = N * trials <= n
        perm = rng.permutation(n)
        picks: dict[str, list[float]] = {}
        n_trials = 1 if N == n else trials  # N = every cell: one trial, the whole sample
        for t in range(n_trials):
            cells = perm[t * N:(t + 1) * N] if disjoint else rng.choice(n, N, replace=False)
            cols = {p: np.where(np.isnan(v[cells]), -np.inf, v[cells]) for p, v in scores.items() if p != "az_nas"}
            if "az_nas" in scores:
                cols["az_nas"] = np.array(log_rank_aggregate(
                    {p: [None if np.isinf(v) else float(v) for v in cols[p]] for p in AZ_NAS_INPUTS}))
            cols["params (alone)"] = params[cells]
            for p, v in cols.items():
                picks.setdefault(p, []).append(float(acc[cells][int(np.argmax(v))]))
            picks.setdefault("random", []).append(float(acc[cells].mean()))
            picks.setdefault("oracle", []).append(float(acc[cells].max()))
        note = ("disjoint" if disjoint else f"overlapping draws from {n} cells") if n_trials > 1 else f"one trial: all {n} cells"
        out.append({"N": N, "trials": n_trials, "note": note,
                    "picks": {p: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for p, v in picks.items()}})
    return out


def space_baselines(cells: list[str], acc_all: np.ndarray, sizes: list[int], trials: int, seed: int) -> list[dict]:
    """Best-of-N over seeded samples of the WHOLE space (no scoring needed): params alone (analytic count of the
    official nb201 model), random (mean accuracy of the sample) and the oracle, `trials` samples per N."""
    from initscore import models

    entry = models.get_entry("nb201")
    rng = np.random.default_rng(seed + 1)
    out = []
    for N in sizes:
        picks: dict[str, list[float]] = {}
        for _ in range(trials):
            idx = rng.choice(len(cells), N, replace=False)
            p = np.array([entry.num_params({"cell": cells[i]}) for i in idx], dtype=float)
            a = acc_all[idx]
            picks.setdefault("params (alone)", []).append(float(a[int(np.argmax(p))]))
            picks.setdefault("random", []).append(float(a.mean()))
            picks.setdefault("oracle", []).append(float(a.max()))
        out.append({"N": N, "trials": trials, "note": "whole space, no scoring",
                    "picks": {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for k, v in picks.items()}})
    return out


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
    ap.add_argument("--dataset", default="cifar10", choices=tuple(DATASETS),
                    help="ground-truth column and network head/input: cifar10 (real CIFAR-10 batch), cifar100 "
                         "(100 classes; data-free proxies, or the foolbox images with --images), ImageNet16-120 "
                         "(120 classes, 16x16 input; data-free proxies only)")
    ap.add_argument("--images", default=None,
                    help="cifar100 only: the foolbox wheel (or its unpacked folder) whose 20 real CIFAR-100 images "
                         "form the batch of the data-dependent proxies (batch size 20)")
    ap.add_argument("--sample-seed", type=int, default=None,
                    help="sample the cells with random.Random(SEED).sample(range(15625), n) instead of --seed's numpy draw")
    ap.add_argument("--cells", default=None,
                    help="file with the cells to score, one per line: an NB201 index or a cell string (overrides --n)")
    ap.add_argument("--positions", default=None,
                    help="keep only these positions of the sample, e.g. '0:300,500:1200' (calibration cells excluded)")
    ap.add_argument("--cache", default=None,
                    help="JSONL file of per-cell results: cells already in it are not rescored, new ones are appended "
                         "as they finish (resumable; tables recomputed from it without rescoring)")
    ap.add_argument("--score-only", action="store_true", help="score into --cache and stop (no tables)")
    ap.add_argument("--cached-only", action="store_true",
                    help="tables from the cells already in --cache (complete for the requested proxies); score nothing")
    ap.add_argument("--search-trials", type=int, default=10, help="seeded trials per N of the best-of-N search table")
    ap.add_argument("--search-n", default="100,1000", help="comma-separated N of the best-of-N search table ('' = none)")
    ap.add_argument("--json", default="runs/nb201_ranking.json",
                    help="where to write the results (default under the git-ignored runs/; committed results in "
                         "bench/results/ are written only when asked for by path)")
    args = ap.parse_args()

    import torch
    from scipy.stats import kendalltau, spearmanr

    from initscore import proxies

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    names = list(proxies.PROXIES) if args.proxies == "all" else [p.strip() for p in args.proxies.split(",") if p.strip()]
    unknown = [p for p in names if p not in proxies.PROXIES]
    if unknown:
        sys.exit(f"error: unknown proxies {unknown}; known: {', '.join(proxies.PROXIES)}")
    root = Path(args.data_root)
    column, num_classes, side = DATASETS[args.dataset]
    anchors = ANCHORS_BY_DATASET[args.dataset]
    data_free_only = all(p in DATA_FREE for p in names)
    cells, acc_all = read_ground_truth(root, column)
    idx = select_cells(args, cells)
    ref_norm = {}
    if args.dataset == "cifar10":
        if args.images:
            sys.exit("error: --images is for --dataset cifar100 (CIFAR-10 images come from --data-root)")
        x, y = load_batch(root, args.batch_size, args.seed)
        data_desc = f"{args.batch_size} CIFAR-10 train images"
    elif args.images and args.dataset == "cifar100":
        x, y, mean100, std100 = foolbox_cifar100(Path(args.images))
        ref_norm = {"mean": mean100, "std": std100, "std_zc": std100}  # the reference normalizes CIFAR-100 likewise
        data_desc = f"the {x.shape[0]} foolbox CIFAR-100 images"
    elif data_free_only:
        # these proxies read only the batch's shape; the values are never used
        x, y = torch.zeros(args.batch_size, 3, side, side), torch.zeros(args.batch_size, dtype=torch.long)
        data_desc = f"no data (data-free proxies; input shape 3x{side}x{side})"
    else:
        need = [p for p in names if p not in DATA_FREE]
        sys.exit(f"error: {need} need real {args.dataset} images, which are not here"
                 + (" (pass --images with the foolbox wheel)" if args.dataset == "cifar100" else "")
                 + f"; data-free proxies: {', '.join(DATA_FREE)}")
    if args.reference_data and data_free_only:
        args.reference_data = False  # no data is read, so the data protocol does not apply
    vargs = {} if args.variant == "official" else {"variant": args.variant}
    if num_classes != 10:
        vargs["num_classes"] = num_classes
    specs = [{"arch": "nb201", "args": {"cell": cells[i], **vargs}} for i in idx]

    t_start = time.perf_counter()

    def progress(i: int, total: int, row) -> None:
        if (i + 1) % 10 == 0 or i + 1 == total:
            print(f"  [{i + 1}/{total}] {time.perf_counter() - t_start:.0f}s", file=sys.stderr, flush=True)

    if args.reference_data:
        if args.dataset == "cifar10":
            from initscore import data

            td = data.load({"kind": "cifar10", "root": str(root / "cifar10_jpeg"), "split": "train", "limit": 10000,
                            "seed": args.seed})
            pool = (td.x, td.y)
        else:
            pool = (x, y)
        rows = []
        batches = reference_batches(*pool, args.batch_size, len(specs), args.seed, **ref_norm)
        for i, (spec, b) in enumerate(zip(specs, batches)):
            (row,) = proxies.score_architectures([spec], b, names, seed=args.seed + i)  # model seed = seed + i
            rows.append(row)
            progress(i, len(specs), row)
    elif args.cache:
        idx = [int(i) for i in idx]
        rows = score_with_cache(Path(args.cache), specs, idx, (x, y), names, args.seed, progress, args.cached_only)
    else:
        rows = proxies.score_architectures(specs, (x, y), names, progress=progress, seed=args.seed)
    wall = time.perf_counter() - t_start
    if args.score_only:
        print(f"scored {len(rows)} cells into {args.cache} in {wall:.0f}s")
        return
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
        ci, tci = bootstrap_ci(vals, acc[ok], args.bootstrap, args.seed) if args.bootstrap and len(ok) >= 3 else (None, None)
        table.append({"proxy": p, "n_ok": len(ok), "errors": len(rows) - len(ok), "spearman": rho, "kendall": tau,
                      "spearman_errors_last": rho_last, "anchor": anchors.get(p), "spearman_ci95": ci,
                      "kendall_ci95": tci})
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

    # ---- AZ-NAS's set-level rank aggregation, when its inputs were computed
    from initscore.proxies.aggregate import AZ_NAS_INPUTS, log_rank_aggregate

    if all(p in names for p in AZ_NAS_INPUTS):
        agg = np.array(log_rank_aggregate({p: [r.values.get(p) if r.ok else None for r in rows] for p in AZ_NAS_INPUTS}))
        scores["az_nas"] = agg
        ci, tci = bootstrap_ci(agg, acc, args.bootstrap, args.seed) if args.bootstrap else (None, None)
        table.append({"proxy": "az_nas", "n_ok": len(rows), "errors": 0,
                      "spearman": float(spearmanr(agg, acc).statistic), "kendall": float(kendalltau(agg, acc).statistic),
                      "spearman_errors_last": float(spearmanr(agg, acc).statistic), "anchor": None, "spearman_ci95": ci,
                      "kendall_ci95": tci})
    sizes = [int(n) for n in args.search_n.split(",") if n.strip()]
    search = search_table(rows, scores, acc, sizes, args.search_trials, args.seed)
    search += space_baselines(cells, acc_all, sizes, args.search_trials, args.seed) if sizes else []

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
    print(f"\nNAS-Bench-201 {args.dataset} ({column}): n={len(rows)} cells ({'--cells ' + args.cells if args.cells else f'sample seed {args.sample_seed}' if args.sample_seed is not None else f'numpy seed {args.seed}'}{', positions ' + args.positions if args.positions else ''}), seed={args.seed}, batch={data_desc}, "
          f"torch threads={torch.get_num_threads()}, wall {wall:.0f}s, nb201 variant {args.variant}, "
          f"{'zero-cost-nas data protocol (fresh augmented batch per cell)' if args.reference_data else 'one shared batch'}")
    print(f"{'proxy':<16} {'rho':>7} {'95% CI':>15} {'tau':>7} {'tau 95% CI':>15} {'anchor':>7} {'|d|':>6} {'errors':>6} {'rho_el':>7} {'s/arch':>8}")
    for t in table:
        g = next((g for g in group_times if t["proxy"] in g.split("+")), None)
        sec = statistics.median(group_times[g]) if g else float("nan")
        d = f"{abs(t['spearman'] - t['anchor']):.3f}" if t["anchor"] is not None else ""
        anc = f"{t['anchor']:.2f}" if t["anchor"] is not None else ""
        t["seconds_per_arch_group"] = sec
        ci = f"[{t['spearman_ci95'][0]:.3f},{t['spearman_ci95'][1]:.3f}]" if t["spearman_ci95"] else ""
        tci = f"[{t['kendall_ci95'][0]:.3f},{t['kendall_ci95'][1]:.3f}]" if t.get("kendall_ci95") else ""
        print(f"{t['proxy']:<16} {t['spearman']:>7.3f} {ci:>15} {t['kendall']:>7.3f} {tci:>15} {anc:>7} {d:>6} {t['errors']:>6} {t['spearman_errors_last']:>7.3f} {sec:>8.3f}")
    for s_ in search:
        print(f"search best-of-{s_['N']} ({s_['trials']} trials, {s_['note']}): " + ", ".join(
            f"{k} {v['mean']:.2f}+-{v['std']:.2f}" for k, v in s_["picks"].items()))
    if vote is not None:
        print(f"vote synflow+jacob_cov+snip pairwise agreement: {vote:.3f} (published {VOTE_ANCHOR[args.dataset]:.3f})")
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

    out = {"command": " ".join(sys.argv), "dataset": args.dataset, "ground_truth": column, "data": data_desc,
           "n": args.n, "seed": args.seed, "batch_size": int(x.shape[0]),
           "variant": args.variant, "reference_data": args.reference_data,
           "indices": [int(i) for i in idx], "table": table, "search": search, "vote_agreement": vote, "rank_average": rankavg,
           "wall_s": wall, "median_s_per_arch": per_arch, "timing": timing,
           "rows": [{**r.to_dict(), "nb201_index": int(i), "test_acc": float(a)} for r, i, a in zip(rows, idx, acc)]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
