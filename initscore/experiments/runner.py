"""Run an experiment: initialize, rectify (kaiming / nio / gradinit / metainit), measure, train (torch).

For every model of the config and every seed, the network is built once with
``torch.manual_seed(seed)`` (so all methods of a seed start from the SAME Kaiming
weights), then for every method:

1. ``initscore.nio.rectify(model, train_pool, options)`` with the run's
   :class:`initscore.contract.RectifyOptions` (``init.rectify`` with the run's method and
   seed: :meth:`InitConfig.options_for`); its own held-out GC/GN/g_max (same mode as the rectification,
   batch mode D=2, r=0.6 by default) before/after are recorded with gamma;
2. the held-out scores in ``init.heldout_mode`` (default: exact sample-wise,
   Algorithm 1) with the per-tensor breakdown (GradCosine and max/min per-sample
   gradient-norm ratio: the paper's Figure 3 pair) of the rectified weights;
3. training with the fixed recipe (:mod:`initscore.experiments.recipe`), recording
   per epoch the mean train loss/accuracy (on augmented batches), test loss and
   accuracy, and wall time. A non-finite loss stops the run and marks it diverged
   (kept in the results, never silently dropped).

The held-out batches come from training-split samples that are neither trained on
nor used by the rectification. ``init_fraction`` = rectification seconds /
training seconds (optimizer steps only, test evaluation excluded).

Results are written to ``<out>/results.json`` after every run (a partial run
leaves its finished runs), and plots at the end (:mod:`initscore.experiments.plots`).
"""
from __future__ import annotations

import copy
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from initscore import models
from initscore.contract import RectifyOptions
from initscore.errors import DataError, InitscoreError, OptionsError
from initscore.experiments.config import DataConfig, ExperimentConfig, ModelConfig, parse_config
from initscore.experiments.recipe import (
    augment,
    cosine_lr,
    cutout,
    has_batchnorm,
    needs_clipping,
    pad_values,
    param_groups,
)
from initscore.experiments.summary import finite, summarize

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExperimentResult:
    """Everything an experiment measured; ``to_dict()`` is the JSON written to results.json."""

    config: dict[str, Any]
    environment: dict[str, Any]
    runs: tuple[dict[str, Any], ...]
    summary: tuple[dict[str, Any], ...]
    comparisons: tuple[dict[str, Any], ...]
    seconds: float
    files: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "environment": self.environment,
            "summary": list(self.summary),
            "comparisons": list(self.comparisons),
            "runs": list(self.runs),
            "seconds": self.seconds,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class Splits:
    train: Any  # initscore.data.TensorData
    heldout: list[tuple[Tensor, Tensor]]
    test: Any


# ------------------------------------------------------------------ data
def load_splits(cfg: DataConfig, device: torch.device) -> Splits:
    """Train pool, held-out batches (disjoint from it) and test set, on ``device``."""
    from initscore import data as datamod

    n_extra = cfg.heldout_size
    if cfg.kind == "synthetic":
        assert cfg.train_size is not None and cfg.test_size is not None
        common = {"kind": "synthetic", "shape": list(cfg.shape), "num_classes": cfg.num_classes, "batch_size": 1}
        full = datamod.load({**common, "limit": cfg.train_size + n_extra, "seed": cfg.seed})
        test = datamod.load({**common, "limit": cfg.test_size, "seed": cfg.seed + 1})
    else:
        root = cfg.root or datamod.default_cifar10_root()
        if cfg.kind != "cifar10" and cfg.root is None:
            raise DataError(f"data kind {cfg.kind!r} needs data.root")
        if root is None:
            raise DataError("no CIFAR-10 root: set data.root (or INITSCORE_DATA_ROOT); ../shared/data/cifar10_jpeg was not found")
        limit = None if cfg.train_size is None else cfg.train_size + n_extra
        full = datamod.load({"kind": cfg.kind, "root": str(root), "split": "train", "limit": limit,
                             "seed": cfg.seed, "batch_size": 1})
        test = datamod.load({"kind": cfg.kind, "root": str(root), "split": "test", "limit": cfg.test_size,
                             "seed": cfg.seed, "batch_size": 1})
    if len(full) <= n_extra:
        raise DataError(f"{full.name}: {len(full)} samples cannot leave {n_extra} held out")
    train, held = full.split(n_extra, seed=cfg.seed)
    if device.type != "cpu":
        train = type(train)(train.x.to(device), train.y.to(device), train.num_classes, train.name, train.stats)
        test = type(test)(test.x.to(device), test.y.to(device), test.num_classes, test.name, test.stats)
    hb = cfg.heldout_batch_size
    batches = [(held.x[i:i + hb].to(device), held.y[i:i + hb].to(device))
               for i in range(0, len(held) - hb + 1, hb)]
    return Splits(train=train, heldout=batches, test=test)


# ------------------------------------------------------------------ scores
def heldout_exact(model: nn.Module, batches: list[tuple[Tensor, Tensor]], mode: str,
                  sub_batches: int, overlap: float | None) -> dict[str, Any]:
    """Mean gc/gn, max g_max over held-out batches (and each batch's g_max, ``g_max_batches``: a held-out batch has
    as many images as a rectification batch, so each is the like-for-like check of g_max <= gamma), and per-tensor
    gc / norm_ratio (mean over batches). ``overlap`` None: the paper profile's default."""
    from initscore.scores import gradcosine

    res = [gradcosine(model, b, mode=mode, sub_batches=sub_batches, overlap=overlap if mode == "batch" else 0.0)
           for b in batches]
    layers = []
    for i, lay in enumerate(res[0].layers):
        ratios = [r.layers[i].norm_ratio for r in res]
        ratios_ok = [v for v in ratios if v is not None and math.isfinite(v)]
        layers.append({
            "name": lay.name,
            "numel": lay.numel,
            "gc": sum(r.layers[i].gc for r in res) / len(res),
            "norm_ratio": (sum(ratios_ok) / len(ratios_ok)) if ratios_ok else None,
            "gn": sum(r.layers[i].gn for r in res) / len(res),
        })
    return {
        "mode": mode,
        "gc": sum(r.gc for r in res) / len(res),
        "gn": sum(r.gn for r in res) / len(res),
        "g_max": max(r.g_max for r in res),
        "g_max_batches": [r.g_max for r in res],
        "g_min": min(r.g_min for r in res),
        "layers": layers,
    }


# ------------------------------------------------------------------ training
@torch.no_grad()
def evaluate(model: nn.Module, data: Any, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) on all samples of ``data`` in eval mode."""
    model.eval()
    total_loss, correct, n = 0.0, 0, len(data)
    for i in range(0, n, batch_size):
        x, y = data.x[i:i + batch_size], data.y[i:i + batch_size]
        out = model(x)
        total_loss += float(nn.functional.cross_entropy(out.double(), y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    return total_loss / n, 100.0 * correct / n


def train(model: nn.Module, splits: Splits, cfg: ExperimentConfig, seed: int, log: Log) -> dict[str, Any]:
    """Train with the fixed recipe; per-epoch records. A non-finite loss ends the run as diverged."""
    r = cfg.recipe
    train_data = splits.train
    n = len(train_data)
    bs = min(r.batch_size, n)
    steps_per_epoch = n // bs
    total = steps_per_epoch * r.epochs
    warm = int(round(r.warmup_epochs * steps_per_epoch))
    clip = needs_clipping(model, r.clip_grad_norm)
    opt = torch.optim.SGD(param_groups(model, r.weight_decay, r.bn_weight_decay, r.nobn_bias_lr_scale),
                          lr=cosine_lr(0, total, r.lr, warm), momentum=r.momentum, weight_decay=r.weight_decay)
    device = train_data.x.device
    gen = torch.Generator(device="cpu").manual_seed(10_007 * seed + 1)
    fill = pad_values(train_data.stats, train_data.x.shape[1]) if train_data.x.dim() == 4 else None
    epochs: list[dict[str, Any]] = []
    step, train_seconds, diverged = 0, 0.0, False
    clipped_steps = 0
    t_start = time.perf_counter()
    for epoch in range(1, r.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x, y = train_data.x[idx], train_data.y[idx]
            if r.augment and x.dim() == 4:
                x = augment(x, gen, r.crop_padding, fill)
                if r.cutout:
                    x = cutout(x, gen, r.cutout)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, r.lr, warm) * g["lr_scale"]
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            if not bool(torch.isfinite(loss)):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                clipped_steps += int(float(norm) > clip)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.detach().argmax(1) == y).sum())
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, splits.test, r.eval_batch_size)
        if not math.isfinite(test_loss):
            diverged = True
        rec = {
            "epoch": epoch,
            "train_loss": loss_sum / seen if seen else float("nan"),
            "train_acc": 100.0 * correct / seen if seen else float("nan"),
            "test_loss": test_loss if math.isfinite(test_loss) else None,
            "test_acc": test_acc,
            "lr_end": cosine_lr(max(step - 1, 0), total, r.lr, warm),
            "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - t_start,
        }
        if not math.isfinite(rec["train_loss"]):
            rec["train_loss"] = None
        epochs.append(rec)
        log(f"    epoch {epoch}/{r.epochs}: train loss {rec['train_loss'] if rec['train_loss'] is None else round(rec['train_loss'], 4)}"
            f"  test acc {test_acc:.2f}%  ({rec['wall_seconds']:.0f} s)")
        if diverged:
            log(f"    diverged (non-finite loss) in epoch {epoch}; stopping this run")
            break
    return {
        "epochs": epochs,
        "train_seconds": train_seconds,
        "steps": step,
        "clip_grad_norm": clip,
        "clipped_steps": clipped_steps,
        "diverged": diverged,
        "final_test_acc": epochs[-1]["test_acc"] if epochs else None,
        "final_train_loss": epochs[-1]["train_loss"] if epochs else None,
    }


# ------------------------------------------------------------------ driver
def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionsError("device 'cuda' requested but CUDA is not available; use device 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def environment(device: torch.device, threads: int | None) -> dict[str, Any]:
    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def first_gmax(base: nn.Module, splits: Splits, options: RectifyOptions, batch_size: int) -> float:
    """g_max of the first batch ``rectify(options=options, batch_size=batch_size)`` draws, scored with the
    rectification's own settings (NIO's gamma reference)."""
    from initscore.scores import gradcosine

    o = options
    batch = next(splits.train.batches(batch_size, o.seed))
    return gradcosine(base, batch, mode=o.mode, sub_batches=o.sub_batches,
                      overlap=o.overlap if o.mode == "batch" else 0.0, bn=o.bn, split=o.split,
                      profile=o.profile).g_max


def rectify_options(base: nn.Module, splits: Splits, cfg: ExperimentConfig, seed: int,
                    method: str) -> tuple[RectifyOptions, int]:
    """(options, batch_size) of one run: :meth:`InitConfig.options_for` with gamma resolved (``gamma_factor`` x
    the first batch's g_max for the bounded methods) and :meth:`InitConfig.batch_size_for`."""
    options, batch_size = cfg.init.options_for(method, seed), cfg.init.batch_size_for(method)
    if cfg.init.gamma_factor is not None and method in ("nio", "gradinit"):
        options = options.updated(gamma=cfg.init.gamma_factor * first_gmax(base, splits, options, batch_size))
    return options, batch_size


def run_one(base: nn.Module, mcfg: ModelConfig, method: str, seed: int, splits: Splits,
            cfg: ExperimentConfig, exact_before: dict[str, Any], log: Log) -> dict[str, Any]:
    """Rectify a copy of ``base`` with ``method``, measure held-out scores, train; one run record."""
    from initscore import nio

    options, batch_size = rectify_options(base, splits, cfg, seed, method)
    try:
        rect = nio.rectify(base, splits.train, options, batch_size=batch_size, heldout=splits.heldout)
    except (InitscoreError, RuntimeError) as exc:  # recorded, never dropped silently
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log(f"  [{mcfg.name} seed {seed} {method}] rectification FAILED: {msg}")
        return {"model": mcfg.name, "spec": mcfg.spec(), "method": method, "seed": seed, "error": msg}
    model = copy.deepcopy(base)
    nio.apply(model, rect)
    if method == "kaiming":
        exact_after = exact_before
    else:
        exact_after = heldout_exact(model, splits.heldout, cfg.init.heldout_mode, cfg.init.rectify.sub_batches,
                                    cfg.init.rectify.overlap)
    scales = [v for k, v in rect.scales.items() if k not in rect.unscalable]
    # the record of the RETURNED iterate: with select="feasible" history[k] measured iterate k (and
    # rect.final the last one); with "last" the final iterate is never measured, so this is the last
    # measured one (iterate iters-1)
    last = None
    if rect.select in ("feasible", "best") and rect.history:
        k = rect.returned_iterate or 0
        last = rect.history[k] if k < len(rect.history) else rect.final
    elif rect.history:
        last = rect.history[-1]
    log(f"  [{mcfg.name} seed {seed} {method}] init {rect.seconds:.1f} s; held-out "
        f"{cfg.init.heldout_mode}-GC {exact_before['gc']:.4f} -> {exact_after['gc']:.4f}, "
        f"{options.mode}-GC {rect.heldout_before.get('gc', float('nan')):.4f} -> "
        f"{rect.heldout_after.get('gc', float('nan')):.4f}"
        + (f", g_max {rect.heldout_after.get('g_max', float('nan')):.3f} (gamma {rect.gamma:.3f})" if rect.gamma else ""))
    trained = train(model, splits, cfg, seed, log)
    return {
        "model": mcfg.name,
        "spec": mcfg.spec(),
        "method": method,
        "seed": seed,
        "params": sum(p.numel() for p in base.parameters()),
        "has_batchnorm": has_batchnorm(base),
        "init": {
            "seconds": rect.seconds,
            "gamma": rect.gamma,
            "iters": len(rect.history),
            "heldout_before": dict(rect.heldout_before),   # rectification's mode (default batch, D=2, r=0.6)
            "heldout_after": dict(rect.heldout_after),
            "exact_before": {k: v for k, v in exact_before.items() if k != "layers"},
            "exact_after": {k: v for k, v in exact_after.items() if k != "layers"},
            "layers_before": exact_before["layers"],
            "layers_after": exact_after["layers"],
            "last_iteration": last,
            "select": rect.select,
            "gamma_margin": rect.gamma_margin,
            "returned_iterate": rect.returned_iterate,
            "mode": options.mode,
            "batch_size": batch_size,
            "final_iterate": rect.final,
            "verification": rect.verification,
            "constrained_iters": sum(1 for h in rect.history if h.get("constrained")),
            "scales_min": min(scales) if scales else None,
            "scales_max": max(scales) if scales else None,
            "scales": dict(rect.scales),
            "unscalable": list(rect.unscalable),
            "fixed": list(rect.fixed),
        },
        "train": trained,
        "init_fraction": (rect.seconds / trained["train_seconds"]) if trained["train_seconds"] > 0 else None,
    }


def run_experiment(config: ExperimentConfig | dict[str, Any], out_dir: str | Path | None = None, *,
                   log: Log | None = None, plots: bool = True) -> ExperimentResult:
    """Run every (model, seed, method) of ``config``; write results.json and PNG plots to ``out_dir``."""
    cfg = parse_config(config)
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    device = pick_device(cfg.device)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    for m in cfg.models:  # validate every spec (and the scale_tensors patterns against its names) before any work
        models.validate_spec(m.spec())
        patterns = cfg.init_for(m).rectify.scale_tensors
        if patterns is not None:
            from initscore.nio import select_tensors

            net = models.build(m.spec())
            select_tensors([n for n, p in net.named_parameters() if p.requires_grad and bool((p != 0).any())],
                           list(patterns))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = load_splits(cfg.data, device)
    log(f"data: {len(splits.train)} train, {sum(len(b[1]) for b in splits.heldout)} held-out "
        f"({len(splits.heldout)} batches), {len(splits.test)} test; device {device}")
    env = environment(device, cfg.threads)
    runs: list[dict[str, Any]] = []

    def snapshot(files: tuple[str, ...] = ()) -> ExperimentResult:
        summary, comps = summarize(runs)
        res = ExperimentResult(config=cfg.model_dump(mode="json"), environment=env, runs=tuple(runs),
                               summary=tuple(summary), comparisons=tuple(comps),
                               seconds=time.perf_counter() - t0, files=files)
        if out is not None:
            tmp = out / "results.json.tmp"
            tmp.write_text(json.dumps(finite(res.to_dict()), indent=1, allow_nan=False))
            tmp.replace(out / "results.json")
        return res

    for mcfg in cfg.models:
        mc = cfg.model_copy(update={"init": cfg.init_for(mcfg)})  # this model's init (its overrides applied)
        for seed in cfg.seeds:
            torch.manual_seed(seed)
            base = models.build(mcfg.spec()).to(device)
            exact_before = heldout_exact(base, splits.heldout, mc.init.heldout_mode, mc.init.rectify.sub_batches,
                                         mc.init.rectify.overlap)
            for method in cfg.methods:
                runs.append(run_one(base, mcfg, method, seed, splits, mc, exact_before, log))
                snapshot()
    files: tuple[str, ...] = ()
    if plots and out is not None:
        from initscore.experiments.plots import plot_all

        files = tuple(plot_all(runs, out))
    res = snapshot(files)
    log(f"done in {res.seconds:.0f} s")
    return res


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by :func:`run_experiment`."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise OptionsError(f"{p}: no results.json there")
    return json.loads(p.read_text())
