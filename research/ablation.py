"""Rectification-only ablation (no training): which NIO settings raise HELD-OUT GradCosine?

For each variant of the rectification hyperparameters and each seed, the network is
built with ``torch.manual_seed(seed)``, rectified with ``initscore.nio.rectify`` on the
training pool, and scored on held-out batches (disjoint from the pool) before and after,
both exactly (sample-wise, Algorithm 1) and in batch mode (Eq. 7, D=2, r=0.6). Also
reported: which tensors got the largest / smallest scales.

A variant (:class:`Variant`) is a ``contract.RectifyOptions`` whose explicitly set fields override the
ablation's :data:`BASE`, plus the batch size and a gamma relative to the initial g_max, which are not options.
Variants (``VARIANTS``): the default (batch mode D=2, r=0.6, Adam lr 0.1, gamma = 2x the
initial g_max), no overlap (r=0), gamma = 1x the initial g_max (GN may not grow),
GC only (``gn_weight=0``), a smaller lr, the exact
sample-wise objective.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from initscore import models
from initscore.contract import RectifyOptions
from initscore.experiments.config import DataConfig
from initscore.experiments.runner import heldout_exact, load_splits
from initscore.experiments.summary import stats


@dataclass(frozen=True)
class Variant:
    """One setting of an ablation.

    options: the rectify options in which the variant differs from the ablation's base (only the fields set
        explicitly on it count; :func:`run_ablation` applies them with ``RectifyOptions.updated``).
    batch_size: samples per iteration (``nio.rectify``'s ``batch_size``, not an option); None: the ablation's.
    gamma_factor: gamma = gamma_factor x the initial g_max on the first training batch; None: the options' gamma.
    """

    options: RectifyOptions = field(default_factory=RectifyOptions)
    batch_size: int | None = None
    gamma_factor: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.options, RectifyOptions):
            raise TypeError(f"Variant.options must be a RectifyOptions, got {type(self.options).__name__}")
        if self.gamma_factor is not None and not self.gamma_factor > 0:
            raise ValueError(f"gamma_factor must be positive, got {self.gamma_factor!r}")


def variant(base: RectifyOptions | None = None, *, batch_size: int | None = None, gamma_factor: float | None = None,
            **options: Any) -> Variant:
    """A :class:`Variant` whose options are ``base`` (None: no field set) with ``options`` applied by
    ``RectifyOptions.updated`` (validated; a name that is not an option is a pydantic error naming it)."""
    return Variant((base or RectifyOptions()).updated(**options), batch_size, gamma_factor)


# The ablation's base: batch mode (Eq. 7, D=2, r=0.6), Adam lr 0.1; iters and seed are set per run.
BASE = RectifyOptions(lr=0.1, overlap=0.6, mode="batch")

VARIANTS: dict[str, Variant] = {
    "default (batch D=2 r=0.6, lr 0.1, gamma 2x)": variant(),
    "overlap r=0": variant(overlap=0.0),
    "gamma 1x initial g_max": variant(gamma_factor=1.0),
    "GC only (gn_weight=0)": variant(gn_weight=0.0),
    "lr 0.01": variant(lr=0.01),
    "sample mode (exact GC), B=32": variant(mode="sample", batch_size=32),
}


def options_for(v: Variant, *, iters: int, seed: int) -> RectifyOptions:
    """The options of one run: :data:`BASE` with ``iters`` and ``seed``, then the variant's explicitly set fields."""
    return BASE.updated(**{"iters": iters, "seed": seed, **v.options.model_dump(exclude_unset=True)})


def run_ablation(spec: dict[str, Any], seeds: list[int], *, iters: int = 20, batch_size: int = 64,
                 data: DataConfig | None = None, variants: dict[str, Variant] | None = None,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """For each variant and seed: build ``spec`` with ``torch.manual_seed(seed)``, rectify it with
    ``nio.rectify(model, pool, options_for(variant, iters=iters, seed=seed))`` (a variant's own ``iters``
    wins), and score it on the held-out batches before and after. One row per variant."""
    from initscore import nio
    from initscore.scores import gradcosine

    data = data or DataConfig(train_size=2000, test_size=1, heldout_size=128, heldout_batch_size=64)
    splits = load_splits(data, torch.device("cpu"))
    rows = []
    for name, v in (variants or VARIANTS).items():
        if not isinstance(v, Variant):
            raise TypeError(f"variant {name!r} must be a research.ablation.Variant, got {type(v).__name__}")
        bs = v.batch_size or batch_size
        per_seed = []
        for seed in seeds:
            torch.manual_seed(seed)
            base = models.build(spec)
            before = heldout_exact(base, splits.heldout, "sample", 2, 0.0)
            options = options_for(v, iters=iters, seed=seed)
            if v.gamma_factor is not None:  # gamma relative to the initial g_max on the first training batch
                x, y = next(splits.train.batches(bs, seed))
                g0 = gradcosine(base, (x, y), mode=options.mode, sub_batches=options.sub_batches,
                                overlap=options.overlap if options.mode == "batch" else 0.0)
                options = options.updated(gamma=float(v.gamma_factor * g0.g_max))
            t0 = time.perf_counter()
            rect = nio.rectify(base, splits.train, options, batch_size=bs, heldout=splits.heldout)
            m = models.build(spec)
            nio.apply(m, rect)
            after = heldout_exact(m, splits.heldout, "sample", 2, 0.0)
            sc = {k: s for k, s in rect.scales.items() if k not in rect.unscalable}
            top = sorted(sc.items(), key=lambda kv: -kv[1])
            per_seed.append({
                "seed": seed, "exact_gc_before": before["gc"], "exact_gc_after": after["gc"],
                "exact_gn_before": before["gn"], "exact_gn_after": after["gn"],
                "batch_gc_before": rect.heldout_before.get("gc"), "batch_gc_after": rect.heldout_after.get("gc"),
                "batch_gmax_after": rect.heldout_after.get("g_max"), "gamma": rect.gamma,
                "returned_iterate": rect.returned_iterate,
                "heldout_gmax_batches": after.get("g_max_batches"),
                "verified": None if rect.verification is None else rect.verification["passed"],
                "constrained_iters": sum(1 for h in rect.history if h.get("constrained")),
                "largest_scales": top[:3], "smallest_scales": top[-3:], "seconds": time.perf_counter() - t0,
            })
            log(f"{name} seed {seed}: exact GC {before['gc']:.4f} -> {after['gc']:.4f}, GN {before['gn']:.2f} -> "
                f"{after['gn']:.2f}; held-out g_max/gamma {(rect.heldout_after.get('g_max') or 0) / (rect.gamma or float('nan')):.2f}"
                f" (returned iterate {rect.returned_iterate}); batch GC {per_seed[-1]['batch_gc_before']:.4f} -> {per_seed[-1]['batch_gc_after']:.4f}; "
                f"top scales {[(k, round(s, 2)) for k, s in top[:3]]}")
        rows.append({
            "variant": name, "spec": spec, "iters": iters, "runs": per_seed,
            "delta_exact_gc": stats(r["exact_gc_after"] - r["exact_gc_before"] for r in per_seed),
            "exact_gc_after": stats(r["exact_gc_after"] for r in per_seed),
            "exact_gn_ratio": stats(r["exact_gn_after"] / r["exact_gn_before"] for r in per_seed),
            "delta_batch_gc": stats(r["batch_gc_after"] - r["batch_gc_before"] for r in per_seed),
        })
    return rows


def per_seed_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One markdown row per variant, per-seed values comma-separated: Δ exact GC (held-out), GN after / before,
    held-out g_max / gamma, returned iterate, constraint steps, held-out batches with g_max <= gamma (the tables
    of research/nio_investigation.md's follow-ups)."""
    out = []
    for r in rows:
        runs = r["runs"]
        cols = [", ".join(f"{x['exact_gc_after'] - x['exact_gc_before']:+.3f}" for x in runs),
                ", ".join(f"{x['exact_gn_after'] / x['exact_gn_before']:.2f}" for x in runs),
                ", ".join(f"{(x['batch_gmax_after'] or 0) / x['gamma']:.2f}" for x in runs),
                ", ".join(str(x["returned_iterate"]) for x in runs),
                ", ".join(str(x["constrained_iters"]) for x in runs),
                ", ".join("n/a" if not x.get("heldout_gmax_batches") else
                          f"{sum(g <= x['gamma'] for g in x['heldout_gmax_batches'])}/{len(x['heldout_gmax_batches'])}"
                          for x in runs)]
        out.append(f"| {r['variant']} | " + " | ".join(cols) + " |")
    return out


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    def f(s: dict[str, Any], fmt: str) -> str:
        return "n/a" if s["mean"] is None else f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])}"

    out = ["| model | variant | Δ exact GC (held-out) | exact GC after | GN after / before | Δ batch GC (r=0.6) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        label = r["spec"]["arch"] + ("" if r["spec"].get("args", {}).get("bn", True) else " no-BN")
        out.append(f"| {label} | {r['variant']} | {f(r['delta_exact_gc'], '{:+.4f}')} | {f(r['exact_gc_after'], '{:.4f}')} | "
                   f"{f(r['exact_gn_ratio'], '{:.2f}')} | {f(r['delta_batch_gc'], '{:+.4f}')} |")
    return "\n".join(out) + "\n"


def tuning_main(variants: dict[str, Variant], description: str, name: str,
                argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line of the bench/nio_*_ablation.py scripts: :func:`run_ablation` of ``variants`` on ResNet-20
    (``--bn``: with BatchNorm) over the tuning seeds (default 10,11) and data seed 1 with a ``--pool``-image
    training pool; prints :func:`per_seed_lines` and writes the rows to runs/NAME_POOL_[no]bn.json."""
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--pool", type=int, default=2000, help="training pool size (data seed 1)")
    ap.add_argument("--bn", action="store_true", help="ResNet-20 with BatchNorm (default: without)")
    ap.add_argument("--seeds", default="10,11", help="network seeds (default: the tuning seeds 10,11)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(variants))
    ap.add_argument("--json", default=None, help=f"output (default runs/{name}_POOL_[no]bn.json)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    chosen = variants if a.variants is None else {k: variants[k] for k in a.variants.split(",")}
    spec = {"arch": "resnet20", "args": {"bn": a.bn}}
    data = DataConfig(train_size=a.pool, test_size=1, heldout_size=128, heldout_batch_size=64, seed=1)
    rows = run_ablation(spec, [int(s) for s in a.seeds.split(",")], data=data, variants=chosen)
    out = Path(a.json or f"runs/{name}_{a.pool}_{'bn' if a.bn else 'nobn'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, default=str))
    for line in per_seed_lines(rows):
        print(line)
    return rows
