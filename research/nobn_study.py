"""Why NIO's GradCosine gain needs GradNorm growth on the no-BN ResNet-20 (research/nio_investigation.md, investigation).

Three tools, all on the tuning seeds/data of the investigation (network seeds 10/11,
data seed 1), never on the reported run's:

* :func:`scale_slopes` -- d GC / d s_l of the exact sample-wise GC (Algorithm 1, the
  quantity :func:`initscore.nio.grad_terms` optimizes) for every per-tensor scale s_l at
  s = 1, by autograd through :func:`initscore.nio.nio_objective` (``gn_weight=0``), on
  several training batches, with central finite differences for a few tensors and GC
  along a global scale c (all s_l = c).
* :func:`prototype_rectify` -- :func:`initscore.nio.rectify` in sample mode (clamp at 0.01, gamma = 2x
  the first g_max, margin, last feasible iterate) with two switches the engine's options do not have,
  given through its study hooks: ``constraint="loggn"`` (``objective_fn``: the constraint step descends
  log GN, whose gradient dGN/GN is of the size of the GC terms, instead of GN) and ``split_optimizer``
  (``make_step``: one Adam per branch instead of one shared Adam). With ``constraint="gn"`` and
  ``split_optimizer=False`` it is ``nio.rectify(mode="sample", select="feasible")``
  (tests/research/test_nobn_study.py).
* ``trace=True`` prints every step (``on_step``): branch, GC, GN, g_max/gamma, the scales and Adam's
  m / sqrt(v) (the sign-like step Adam takes).

Command line (under the bench lock on this machine)::

    python -m research.nobn_study ablation --seeds 10,11   # engine options only (run_ablation)
    python -m research.nobn_study slopes --seed 10 [--float64]
    python -m research.nobn_study proto --seeds 10,11 --gn-weight 0 --lr 0.03 --constraint loggn
    python -m research.nobn_study proto --seeds 10 --gn-weight 0 --lr 0.1 --trace
    python -m research.nobn_study proto --seeds 10,11 --gn-weight 0 --lr 0.03 --constraint loggn \
        --train tune.json      # rectify on the config's 10k pool, then train with its recipe
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from initscore import models, nio
from initscore.contract import RectifyOptions
from initscore.experiments.config import DataConfig, ExperimentConfig, parse_config
from initscore.experiments.runner import Splits, heldout_exact, load_splits, train
from initscore.scores import trainable
from research.ablation import Variant, variant

NOBN_SPEC: dict[str, Any] = {"arch": "resnet20", "args": {"bn": False}}
# The cpu preset's NIO setting (sample mode, margin 0.3, last feasible iterate; batches of 64, the default of
# run_ablation and nio.rectify) and rectification-only variants of it (run_ablation; engine options only).
PRESET_NIO = RectifyOptions(mode="sample", gamma_margin=0.3, select="feasible")
NOBN_VARIANTS: dict[str, Variant] = {
    "cpu preset (gn_weight 1, Adam lr 0.1)": variant(PRESET_NIO),
    "gn_weight 0.1": variant(PRESET_NIO, gn_weight=0.1),
    "gn_weight 0.01": variant(PRESET_NIO, gn_weight=0.01),
    "gn_weight 0.003": variant(PRESET_NIO, gn_weight=0.003),
    "gn_weight 0": variant(PRESET_NIO, gn_weight=0.0),
    "gn_weight 0.01, lr 0.01": variant(PRESET_NIO, gn_weight=0.01, lr=0.01),
    "SGD lr 1e-4, gn_weight 1": variant(PRESET_NIO, optimizer="sgd", lr=1e-4),
    "SGD lr 3e-4, gn_weight 1": variant(PRESET_NIO, optimizer="sgd", lr=3e-4),
    "SGD lr 0.1, gn_weight 0": variant(PRESET_NIO, optimizer="sgd", lr=0.1, gn_weight=0.0),
}
TUNING_DATA = DataConfig(train_size=2000, test_size=1, heldout_size=128, heldout_batch_size=64, seed=1)
Log = Callable[[str], None]


def _scaled(spec: dict[str, Any], seed: int, gn_weight: float, dtype: torch.dtype = torch.float32
            ) -> tuple[torch.nn.Module, nio.ScaledParams, nio.Context]:
    torch.manual_seed(seed)
    base = models.build(spec).to(dtype)
    net = nio.bnmod.scoring_copy(base, "calibrated", primitive=True)
    sp = nio.ScaledParams(trainable(net))
    ctx = nio.Context(net=net, loss=None, mode="sample", bn_mode="calibrated", has_bn=nio.bnmod.has_batchnorm(base),
                      sub_batches=2, overlap=0.0, gamma=None, gn_weight=gn_weight)
    return base, sp, ctx


def scale_slopes(splits: Splits, seed: int, *, spec: dict[str, Any] | None = None, batches: int = 4,
                 fd_tensors: int = 3, fd_eps: tuple[float, ...] = (1e-3, 1e-5),
                 global_scales: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25), dtype: torch.dtype = torch.float32,
                 log: Log = print) -> dict[str, Any]:
    """Autograd d GC / d s_l at s = 1 on ``batches`` training batches of 64, FD checks, GC along a global scale.

    ReLU kinks make GC piecewise smooth in the scales: a finite difference over eps crosses
    activation-pattern changes, so it approaches the autograd slope only as eps -> 0, which
    float32 rounding does not allow (use ``dtype=torch.float64`` for the FD check).
    """
    spec = spec or NOBN_SPEC
    _, sp, ctx = _scaled(spec, seed, 0.0, dtype)
    ctx.gamma = float("inf")  # never the constraint branch: the objective is -GC
    names = list(sp.scales)
    data = [(x.to(dtype), y) for _, (x, y) in zip(range(batches), splits.train.batches(64, seed))]
    heldout = [(x.to(dtype), y) for x, y in splits.heldout]

    def set_scales(vals: dict[str, float]) -> None:
        with torch.no_grad():
            for n in names:
                sp.scales[n].fill_(vals.get(n, 1.0))

    def gc_at(vals: dict[str, float], b: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        set_scales(vals)
        return nio.measure(ctx, sp.params(), *b)

    slopes: list[dict[str, float]] = []
    for b in data:
        set_scales({})
        with torch.enable_grad():
            obj, _, _ = nio.nio_objective(ctx, sp.params(), *b)
            g = torch.autograd.grad(obj, [sp.scales[n] for n in names])
        slopes.append({n: -float(t) for n, t in zip(names, g)})
    for n in names:
        log(f"dGC/ds {n:26s} " + " ".join(f"{s[n]:+.2e}" for s in slopes))
    up = [sum(1 for n in names if s[n] > 0) for s in slopes]
    log(f"tensors with dGC/ds > 0 per batch: {up} of {len(names)}; d GC / d c (sum): "
        + " ".join(f"{sum(s.values()):+.3f}" for s in slopes))
    fd: dict[str, dict[str, float]] = {}
    for n in [names[0], names[len(names) // 2], names[-1]][:fd_tensors]:
        fd[n] = {}
        for eps in fd_eps:
            fd[n][str(eps)] = (gc_at({n: 1 + eps}, data[0])["gc"] - gc_at({n: 1 - eps}, data[0])["gc"]) / (2 * eps)
        log(f"FD {n}: " + ", ".join(f"eps {e}: {v:+.4e}" for e, v in fd[n].items()) + f"; autograd {slopes[0][n]:+.4e}")
    sweep = []
    for c in global_scales:
        r = [gc_at({n: c for n in names}, b) for b in [data[0], *heldout]]
        sweep.append({"c": c, "gc_train": r[0]["gc"], "gn_train": r[0]["gn"],
                      "gc_heldout": sum(x["gc"] for x in r[1:]) / len(r[1:])})
        log(f"global scale {c}: GC train {r[0]['gc']:.4f}, held-out {sweep[-1]['gc_heldout']:.4f}; GN train {r[0]['gn']:.1f}")
    set_scales({})
    return {"seed": seed, "slopes": slopes, "fd": fd, "global": sweep}


def prototype_rectify(splits: Splits, seed: int, *, spec: dict[str, Any] | None = None, gn_weight: float = 1.0,
                      lr: float = 0.1, iters: int = 20, batch_size: int = 64, margin: float = 0.3,
                      constraint: str = "gn", split_optimizer: bool = False, trace: bool = False,
                      log: Log = print) -> dict[str, Any]:
    """NIO in sample mode with last-feasible selection; see the module docstring for the two switches.

    It is :func:`initscore.nio.rectify` (``mode="sample"``, ``gamma_margin=margin``, ``select="feasible"``, Adam)
    with its two hooks: ``objective_fn`` replaces the constraint step's GN by log GN, ``make_step`` gives each
    branch its own Adam; ``on_step`` prints the trace. Iteration k (1-based) measures iterate k-1 on the k-th
    batch of ``splits.train.batches(batch_size, seed)``; the final iterate is measured on one more batch.
    Returned: the last iterate within the bound, scored on the held-out batches.
    """
    if constraint not in ("gn", "loggn"):
        raise ValueError(f"constraint must be 'gn' or 'loggn', got {constraint!r}")
    spec = spec or NOBN_SPEC
    torch.manual_seed(seed)
    base = models.build(spec)
    opts: dict[str, torch.optim.Adam] = {}
    grads: list[torch.Tensor] = []

    def objective(ctx: nio.Context, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        obj, rec, constrained = nio.nio_objective(ctx, params, x, y)  # GN when constrained, else -(GC + w GN)
        return (torch.log(obj) if constrained and constraint == "loggn" else obj), rec, constrained

    def make_step(leaves: list[torch.Tensor]) -> Callable[[bool], None]:
        opts["up"] = torch.optim.Adam(leaves, lr=lr)
        opts["down"] = torch.optim.Adam(leaves, lr=lr) if split_optimizer else opts["up"]

        def step(constrained: bool) -> None:
            grads[:] = [s.grad.detach().clone() for s in leaves]
            opts["down" if constrained else "up"].step()
            opts["last"] = opts["down" if constrained else "up"]
        return step

    def show(st: nio.NioStep) -> None:
        opt = opts["last"]
        leaves = [p for group in opt.param_groups for p in group["params"]]
        sv = torch.stack([s.detach() for s in leaves])
        mv = torch.stack([opt.state[s]["exp_avg"] / opt.state[s]["exp_avg_sq"].sqrt().clamp_min(1e-30) for s in leaves])
        gv = torch.stack(grads)
        assert st.gamma is not None
        log(f"it {st.iteration:2d} {'down' if st.constrained else 'up  '} GC {st.gc:.4f} GN {st.gn:9.2f} "
            f"g_max/gamma {st.g_max / st.gamma:.2f} |grad| {float(gv.abs().mean()):.1e} "
            f"grad says up on {int((gv < 0).sum())}/{len(leaves)}; scales {float(sv.min()):.3f}-{float(sv.max()):.3f} "
            f"(mean {float(sv.mean()):.3f}); Adam m/sqrt(v) mean {float(mv.mean()):+.2f}")

    options = RectifyOptions(mode="sample", bn="calibrated", iters=iters, lr=lr, seed=seed, gn_weight=gn_weight,
                             gamma_margin=margin, select="feasible", min_scale=0.01)
    rect = nio.rectify(base, splits.train, options, batch_size=batch_size,
                       objective_fn=objective, make_step=make_step, on_step=show if trace else None)
    assert rect.final is not None and rect.gamma is not None and rect.returned_iterate is not None
    hist = [*rect.history, rect.final]
    k, gamma, scales = rect.returned_iterate, rect.gamma, rect.scales
    model = nio.apply(copy.deepcopy(base), rect)
    before = heldout_exact(base, splits.heldout, "sample", 2, 0.0)
    after = heldout_exact(model, splits.heldout, "sample", 2, 0.0)
    res = {"seed": seed, "gn_weight": gn_weight, "lr": lr, "constraint": constraint, "split_optimizer": split_optimizer,
           "margin": margin, "gamma": gamma, "returned_iterate": k, "history": hist, "scales": scales,
           "constrained_iters": sum(1 for h in hist[:-1] if h["constrained"]),
           "exact_gc_before": before["gc"], "exact_gc_after": after["gc"], "exact_gn_before": before["gn"],
           "exact_gn_after": after["gn"], "heldout_gmax_over_gamma": after["g_max"] / gamma, "model": model}
    vals = [v for n, v in scales.items() if n not in rect.unscalable]
    log(f"seed {seed} gn_weight {gn_weight} lr {lr} constraint {constraint} split {split_optimizer}: returned {k}, "
        f"held-out exact GC {before['gc']:.4f} -> {after['gc']:.4f} ({after['gc'] - before['gc']:+.4f}), "
        f"GN x{after['gn'] / before['gn']:.2f}, held-out g_max/gamma {res['heldout_gmax_over_gamma']:.2f}, "
        f"constrained {res['constrained_iters']}, scales {min(vals):.3f}-{max(vals):.3f}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.nobn_study", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["slopes", "proto", "ablation"])
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--seeds", default="10,11")
    ap.add_argument("--gn-weight", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--constraint", choices=["gn", "loggn"], default="gn")
    ap.add_argument("--split-optimizer", action="store_true")
    ap.add_argument("--margin", type=float, default=0.3)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--float64", action="store_true", help="slopes: network and data in float64 (FD check down to eps 1e-7)")
    ap.add_argument("--train", metavar="CONFIG.json",
                    help="rectify on this config's data (first model, its init iters/batch size) and train with its recipe")
    ap.add_argument("--out", help="write the records as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg: ExperimentConfig | None = parse_config(json.loads(Path(a.train).read_text())) if a.train else None
    splits = load_splits(cfg.data if cfg else TUNING_DATA, torch.device("cpu"))
    out: list[dict[str, Any]] = []
    if a.what == "ablation":
        from research.ablation import per_seed_lines, run_ablation

        seeds = [int(s) for s in a.seeds.split(",")]
        rows = run_ablation(NOBN_SPEC, seeds, data=TUNING_DATA, variants=NOBN_VARIANTS)
        for line in per_seed_lines(rows):
            print(line, flush=True)
        out.extend(rows)
    elif a.what == "slopes":
        out.append(scale_slopes(splits, a.seed, dtype=torch.float64 if a.float64 else torch.float32,
                                fd_eps=(1e-3, 1e-5, 1e-7) if a.float64 else (1e-3, 1e-5)))
    else:
        for seed in (int(s) for s in a.seeds.split(",")):
            r = prototype_rectify(splits, seed, spec=cfg.models[0].spec() if cfg else None, gn_weight=a.gn_weight,
                                  lr=a.lr, margin=a.margin, constraint=a.constraint,
                                  split_optimizer=a.split_optimizer, trace=a.trace,
                                  iters=cfg.init.rectify.iters if cfg else 20,
                                  batch_size=cfg.init.batch_size if cfg else 64)
            model = r.pop("model")
            if cfg is not None:
                r["train"] = train(model, splits, cfg, seed, lambda s: None)
                print(f"seed {seed}: final test acc {r['train']['final_test_acc']}", flush=True)
            out.append(r)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
