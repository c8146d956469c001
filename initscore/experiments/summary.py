"""Aggregation of experiment runs into tables (torch-free): mean, std, min, max over seeds.

``summarize(runs)`` returns one row per (model, method) and one NIO-vs-Kaiming
comparison per model: the paired (same seed, same initial weights) difference of
held-out GradCosine, its mean and sample std over seeds, and Kaiming's own
seed-to-seed std, which is the spread the issue's target compares against.
``markdown(result_dict)`` renders the tables of docs/results/training.md.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """mean, sample std (n-1; 0 for one value), min, max and n over the finite values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": m, "std": sd, "min": min(v), "max": max(v), "n": len(v)}


def finite(obj: Any) -> Any:
    """Copy of a JSON-like object with non-finite floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _get(run: dict[str, Any], *path: str) -> Any:
    cur: Any = run
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _batches(row: dict[str, Any]) -> str:
    """' (k/m batches)': held-out batches (as large as a rectification batch) with g_max <= gamma, where recorded."""
    b = row.get("heldout_batches_within_gamma")
    return f" ({b[0]}/{b[1]} batches)" if b else ""


def _verified(row: dict[str, Any]) -> str:
    """'; k/m verified on V batches': runs whose returned iterate was also within the bound on V more training
    batches (verify_batches), where recorded."""
    v = row.get("verified")
    return f"; {v[0]}/{v[1]} verified on {v[2]} more batches" if v else ""


def _own_mode_gmax_batches(run: dict[str, Any]) -> list[float] | None:
    """Each held-out batch's g_max after rectification in the rectification's own mode: recorded with the exact
    (sample-mode) scores, so only for runs that rectified in that mode (NIO in sample mode)."""
    exact = _get(run, "init", "exact_after") or {}
    return exact.get("g_max_batches") if exact.get("mode") == _get(run, "init", "mode") else None


def summarize(runs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    failed = [r for r in runs if "error" in r]
    runs = [r for r in runs if "error" not in r]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    rows = []
    for (model, method), rs in groups.items():
        gammas = [_get(r, "init", "gamma") for r in rs]
        gmax_after = [_get(r, "init", "heldout_after", "g_max") for r in rs]
        hist_gmax = [(_get(r, "init", "last_iteration") or {}).get("g_max") for r in rs]
        within = [g is None or a is None or a <= g for a, g in zip(hist_gmax, gammas)]
        ver = [v for v in (_get(r, "init", "verification") for r in rs) if v]
        per_batch = [(b, g) for b, g in zip(map(_own_mode_gmax_batches, rs), gammas)
                     if b is not None and g is not None]  # older results.json files have no per-batch list
        rows.append({
            "model": model,
            "method": method,
            "seeds": [r["seed"] for r in rs],
            "final_test_acc": stats(_get(r, "train", "final_test_acc") for r in rs),
            "best_test_acc": stats(max((e["test_acc"] for e in r["train"]["epochs"]), default=None) for r in rs),
            "final_train_loss": stats(_get(r, "train", "final_train_loss") for r in rs),
            "exact_gc_before": stats(_get(r, "init", "exact_before", "gc") for r in rs),
            "exact_gc_after": stats(_get(r, "init", "exact_after", "gc") for r in rs),
            "exact_gn_before": stats(_get(r, "init", "exact_before", "gn") for r in rs),
            "exact_gn_after": stats(_get(r, "init", "exact_after", "gn") for r in rs),
            "heldout_gc_before": stats(_get(r, "init", "heldout_before", "gc") for r in rs),
            "heldout_gc_after": stats(_get(r, "init", "heldout_after", "gc") for r in rs),
            "heldout_gn_before": stats(_get(r, "init", "heldout_before", "gn") for r in rs),
            "heldout_gn_after": stats(_get(r, "init", "heldout_after", "gn") for r in rs),
            "heldout_gmax_after": stats(gmax_after),
            "gamma": stats(gammas),
            "last_iter_gmax": stats(hist_gmax),
            "gmax_within_gamma": sum(within),
            "verified": ([sum(bool(v["passed"]) for v in ver), len(ver), max(v["batches"] for v in ver)]
                         if ver else None),
            "heldout_gmax_within_gamma": sum(1 for a, g in zip(gmax_after, gammas) if g is None or a is None or a <= g),
            "heldout_batches_within_gamma": ([sum(v <= g for b, g in per_batch for v in b),
                                              sum(len(b) for b, _ in per_batch)] if per_batch else None),
            "init_seconds": stats(_get(r, "init", "seconds") for r in rs),
            "train_seconds": stats(_get(r, "train", "train_seconds") for r in rs),
            "init_fraction": stats(r.get("init_fraction") for r in rs),
            "diverged": sum(1 for r in rs if _get(r, "train", "diverged")),
            "failed": 0,
        })
    for r in failed:
        row = next((x for x in rows if x["model"] == r["model"] and x["method"] == r["method"]), None)
        if row is None:
            row = {"model": r["model"], "method": r["method"], "seeds": [], "failed": 0, "errors": []}
            rows.append(row)
        row["failed"] += 1
        row.setdefault("errors", []).append(f"seed {r['seed']}: {r['error']}")
    comps = []
    for model in dict.fromkeys(r["model"] for r in runs):
        by = {(r["method"], r["seed"]): r for r in runs if r["model"] == model}
        seeds = sorted({s for (_, s) in by})
        base = [by[("kaiming", s)] for s in seeds if ("kaiming", s) in by]
        for method in dict.fromkeys(m for (m, _) in by):
            if method == "kaiming" or not base:
                continue
            pairs = [(by[("kaiming", s)], by[(method, s)]) for s in seeds if ("kaiming", s) in by and (method, s) in by]
            d_exact = [_get(b, "init", "exact_after", "gc") - _get(k, "init", "exact_after", "gc") for k, b in pairs]
            # own-mode scores are comparable only when both runs rectified in the same mode
            d_batch = [(_get(b, "init", "heldout_after", "gc") or math.nan) - (_get(k, "init", "heldout_after", "gc") or math.nan)
                       for k, b in pairs if _get(b, "init", "mode") == _get(k, "init", "mode")]
            d_acc = [(_get(b, "train", "final_test_acc") or math.nan) - (_get(k, "train", "final_test_acc") or math.nan)
                     for k, b in pairs]
            kspread = stats(_get(k, "init", "exact_after", "gc") for k in base)["std"]
            de = stats(d_exact)
            comps.append({
                "model": model,
                "method": method,
                "vs": "kaiming",
                "n_pairs": len(pairs),
                "delta_exact_gc": de,
                "delta_heldout_gc": stats(d_batch),
                "delta_final_test_acc": stats(d_acc),
                "kaiming_exact_gc_seed_std": kspread,
                # unpaired reading: the mean gain exceeds Kaiming's own seed-to-seed spread (and its own)
                "gc_gain_exceeds_spread": (de["mean"] is not None and kspread is not None
                                           and de["mean"] > max(kspread, de["std"] or 0.0)),
                # paired reading: the mean paired gain exceeds the std of the paired gains
                "gc_gain_exceeds_paired_spread": (de["mean"] is not None and de["mean"] > (de["std"] or 0.0)),
                "gc_up_pairs": sum(1 for d in d_exact if d > 0),
            })
    return rows, comps


# ------------------------------------------------------------------ markdown
def _ms(s: dict[str, Any] | None, fmt: str = "{:.4f}") -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    if s.get("n", 0) > 1:
        return f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])}"
    return fmt.format(s["mean"])


def markdown(result: dict[str, Any]) -> str:
    """Markdown tables of a results.json dict: training, held-out scores, gamma, init time, NIO vs Kaiming."""
    rows = result.get("summary", [])
    cfg = result.get("config", {})
    hm = cfg.get("init", {}).get("heldout_mode", "sample")
    rm = cfg.get("init", {}).get("mode", "batch")
    bm = cfg.get("init", {}).get("baseline_mode") or rm
    rdesc = f"{rm} mode"
    if bm != rm:  # the rectification-mode columns are in each method's own mode
        rdesc = f"mode: {rm} for nio/kaiming, {bm} for gradinit/metainit"
        rm = "own-mode"
    out = ["| model | method | seeds | final test acc (%) | best test acc (%) | final train loss | diverged |",
           "|---|---|---|---|---|---|---|"]
    ok_rows = [r for r in rows if r["seeds"]]
    for r in ok_rows:
        out.append(f"| {r['model']} | {r['method']} | {len(r['seeds'])} | {_ms(r['final_test_acc'], '{:.2f}')} | "
                   f"{_ms(r['best_test_acc'], '{:.2f}')} | {_ms(r['final_train_loss'], '{:.3f}')} | {r['diverged']} |")
    out += ["", f"Held-out scores at initialization ({hm}-wise = {'exact Algorithm 1' if hm == 'sample' else 'Eq. 7'}; "
            f"and the rectification's own {rdesc}), before -> after rectification:", "",
            f"| model | method | {hm} GC before | {hm} GC after | {hm} GN before | {hm} GN after | "
            f"{rm} GC before | {rm} GC after | {rm} GN after |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in ok_rows:
        out.append(f"| {r['model']} | {r['method']} | {_ms(r['exact_gc_before'])} | {_ms(r['exact_gc_after'])} | "
                   f"{_ms(r['exact_gn_before'], '{:.3f}')} | {_ms(r['exact_gn_after'], '{:.3f}')} | "
                   f"{_ms(r['heldout_gc_before'])} | {_ms(r['heldout_gc_after'])} | {_ms(r['heldout_gn_after'], '{:.3f}')} |")
    out += ["", "Gradient-norm bound and cost of the initialization (g_max on the training batch of the returned "
            "iterate — with select=last the last measured one — and on the held-out batches in "
            f"{rdesc}; init fraction = init seconds / training seconds):", "",
            "| model | method | gamma | g_max returned iterate | runs with g_max <= gamma | held-out g_max after | "
            "runs with held-out g_max <= gamma | init seconds | train seconds | init fraction |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ok_rows:
        n = len(r["seeds"])
        out.append(f"| {r['model']} | {r['method']} | {_ms(r['gamma'], '{:.3f}')} | {_ms(r['last_iter_gmax'], '{:.3f}')} | "
                   f"{r['gmax_within_gamma']}/{n}{_verified(r)} | {_ms(r['heldout_gmax_after'], '{:.3f}')} | "
                   f"{r.get('heldout_gmax_within_gamma', 'n/a')}/{n}{_batches(r)} | "
                   f"{_ms(r['init_seconds'], '{:.1f}')} | {_ms(r['train_seconds'], '{:.0f}')} | "
                   f"{_ms(r['init_fraction'], '{:.3f}')} |")
    fails = [r for r in rows if r.get("failed")]
    if fails:
        out += ["", "Failed rectifications (no training run):", ""]
        out += [f"- {r['model']} / {r['method']}: {e}" for r in fails for e in r.get("errors", [])]
    comps = result.get("comparisons", [])
    if comps:
        out += ["", f"Paired differences against Kaiming (same seed = same initial weights; mean ± std over seeds):", "",
                f"| model | method | Δ {hm} GC | up in pairs | paired: gain > its std | Kaiming {hm} GC seed std | "
                f"unpaired: gain > Kaiming spread | Δ {rm} GC | Δ final test acc (pt) |",
                "|---|---|---|---|---|---|---|---|---|"]
        yn = {True: "yes", False: "no", None: "n/a"}
        for c in comps:
            ks = c["kaiming_exact_gc_seed_std"]
            out.append(f"| {c['model']} | {c['method']} | {_ms(c['delta_exact_gc'], '{:+.4f}')} | "
                       f"{c.get('gc_up_pairs', 'n/a')}/{c['n_pairs']} | {yn[c.get('gc_gain_exceeds_paired_spread')]} | "
                       f"{'n/a' if ks is None else f'{ks:.4f}'} | {'yes' if c['gc_gain_exceeds_spread'] else 'no'} | "
                       f"{_ms(c['delta_heldout_gc'], '{:+.4f}')} | {_ms(c['delta_final_test_acc'], '{:+.2f}')} |")
    return "\n".join(out) + "\n"
