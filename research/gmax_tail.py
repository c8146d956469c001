"""How often does a rectified network exceed gamma on batches it never saw?

An experiment run judges ``g_max <= gamma`` after rectification on its held-out batches (two batches of 64 in
the ``cpu`` preset). ``g_max`` is the largest per-sample gradient norm of a batch, a tail statistic, so two
batches say little about how often a new batch exceeds the bound. :func:`gmax_tail` reproduces an experiment's
rectifications (same data split, seeds and options as :func:`~initscore.experiments.runner.run_experiment`, no
training) and measures ``g_max`` on every batch of the rectification's size drawn from ``n_images`` images of
the test split, for the Kaiming weights and for each method's returned weights, as a fraction of that run's
gamma.

The fraction of batches with ``g_max <= gamma`` estimates the probability that a new batch respects the bound
(each batch's images are distinct; the estimate's binomial standard error is reported). For comparison the
exchangeability bound on the verification check (``rectify(verify_batches=V)``): if the largest of N
verification norms is within gamma, a new batch of n images of the same distribution exceeds it with
probability at most n / (N + n).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch

from initscore import models
from initscore.experiments.config import ExperimentConfig, parse_config
from initscore.experiments.runner import heldout_exact, load_splits, pick_device, rectify_options


def _tail_stats(ratios: list[float]) -> dict[str, Any]:
    """Fraction of batches within gamma (ratio <= 1), its binomial standard error, and the ratio's quantiles."""
    n = len(ratios)
    within = sum(r <= 1.0 for r in ratios)
    p = within / n
    s = sorted(ratios)
    q = lambda f: s[min(n - 1, max(0, math.ceil(f * n) - 1))]  # noqa: E731 — the empirical f-quantile
    return {"batches": n, "within": within, "fraction_within": p, "stderr": math.sqrt(p * (1.0 - p) / n),
            "median": q(0.5), "q90": q(0.9), "max": s[-1]}


def gmax_tail(config: ExperimentConfig | dict[str, Any], *, n_images: int = 2048,
              seeds: Sequence[int] | None = None, methods: Sequence[str] = ("nio",),
              model_labels: Sequence[str] | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (model, seed, method): gamma, the returned iterate, and per-batch ``g_max / gamma`` on the
    test split's batches of the rectification's size, with :func:`_tail_stats`; ``kaiming`` is the same
    statistics for the unrectified weights against the same gamma."""
    from initscore import nio

    cfg = parse_config(config)
    if n_images < 1:
        raise ValueError("n_images must be positive")
    device = pick_device(cfg.device)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"test_size": n_images})})
    splits = load_splits(cfg.data, device)
    rows: list[dict[str, Any]] = []
    for mcfg in cfg.models:
        if model_labels is not None and mcfg.name not in model_labels:
            continue
        mc = cfg.model_copy(update={"init": cfg.init_for(mcfg)})
        for seed in (cfg.seeds if seeds is None else seeds):
            torch.manual_seed(seed)
            base = models.build(mcfg.spec()).to(device)
            for method in methods:
                options, bs = rectify_options(base, splits, mc, seed, method)
                rect = nio.rectify(base, splits.train, options, batch_size=bs, heldout=splits.heldout)
                if rect.gamma is None:
                    log(f"[{mcfg.name} seed {seed} {method}] no gamma (method has no bound): skipped")
                    continue
                batches = [(splits.test.x[i:i + bs], splits.test.y[i:i + bs])
                           for i in range(0, len(splits.test) - bs + 1, bs)]
                model = nio.apply(copy.deepcopy(base), rect)
                mode, D, r = mc.init.heldout_mode, mc.init.rectify.sub_batches, mc.init.rectify.overlap
                before = [g / rect.gamma for g in heldout_exact(base, batches, mode, D, r)["g_max_batches"]]
                after = [g / rect.gamma for g in heldout_exact(model, batches, mode, D, r)["g_max_batches"]]
                held_before = heldout_exact(base, splits.heldout, mode, D, r)
                held_after = heldout_exact(model, splits.heldout, mode, D, r)
                held = held_after["g_max_batches"]
                row = {
                    "model": mcfg.name, "seed": seed, "method": method, "gamma": rect.gamma,
                    "returned_iterate": rect.returned_iterate, "batch_size": bs, "mode": mode, "seconds": rect.seconds,
                    "heldout_gmax_over_gamma": [g / rect.gamma for g in held],
                    "heldout_gc_before": held_before["gc"], "heldout_gc_after": held_after["gc"],
                    "verification": rect.verification,
                    "kaiming": _tail_stats(before), "rectified": _tail_stats(after),
                    "kaiming_ratios": before, "rectified_ratios": after,
                }
                rows.append(row)
                k, a = row["kaiming"], row["rectified"]
                log(f"[{mcfg.name} seed {seed} {method}] gamma {rect.gamma:.3f}, iterate {rect.returned_iterate}; held-out GC "
                    f"{held_before['gc']:.4f} -> {held_after['gc']:.4f}; "
                    f"experiment's held-out batches {', '.join(f'{v:.2f}' for v in row['heldout_gmax_over_gamma'])}"
                    f" of gamma; {a['batches']} test batches of {bs}: within gamma kaiming {k['within']}/{k['batches']}"
                    f", {method} {a['within']}/{a['batches']} (median {a['median']:.2f}, q90 {a['q90']:.2f}, "
                    f"max {a['max']:.2f} of gamma)")
    return rows


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: one line per run."""
    out = ["| model | seed | method | returned iterate | held-out GC before -> after | experiment's held-out batches / gamma | test batches within gamma: "
           "Kaiming | rectified | rectified g_max / gamma: median, q90, max |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k, a = r["kaiming"], r["rectified"]
        out.append(f"| {r['model']} | {r['seed']} | {r['method']} | {r['returned_iterate']} | "
                   f"{r['heldout_gc_before']:.4f} -> {r['heldout_gc_after']:.4f} | "
                   f"{', '.join(f'{v:.2f}' for v in r['heldout_gmax_over_gamma'])} | {k['within']}/{k['batches']} | "
                   f"{a['within']}/{a['batches']} ({100 * a['fraction_within']:.0f} ± {100 * a['stderr']:.0f} %) | "
                   f"{a['median']:.2f}, {a['q90']:.2f}, {a['max']:.2f} |")
    return out
