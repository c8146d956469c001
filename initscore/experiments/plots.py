"""PNG plots of experiment runs (matplotlib, Agg backend).

Per model label ``L``:
  ``results_L_curves.png``  test accuracy and train loss per epoch, one line (mean over
                            seeds) and one min-max band per method;
  ``results_L_fig3.png``    the paper's Figure 3 pair on held-out batches: per parameter
                            tensor, (a) max/min per-sample gradient-norm ratio (log
                            scale) and (b) GradCosine, Kaiming against NIO (mean over seeds).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"kaiming": "tab:blue", "nio": "tab:red", "gradinit": "tab:green", "metainit": "tab:purple"}


def _series(runs: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per epoch: mean, min, max over runs (epochs a diverged run did not reach are skipped for it)."""
    n_ep = max(len(r["train"]["epochs"]) for r in runs)
    xs, mean, lo, hi = [], [], [], []
    for e in range(n_ep):
        vals = [r["train"]["epochs"][e][key] for r in runs
                if e < len(r["train"]["epochs"]) and r["train"]["epochs"][e][key] is not None]
        if not vals:
            continue
        xs.append(e + 1)
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, mean, lo, hi


def plot_curves(runs: Sequence[dict[str, Any]], model: str, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    methods = list(dict.fromkeys(r["method"] for r in runs))
    for ax, key, title in ((axes[0], "test_acc", "test accuracy (%)"), (axes[1], "train_loss", "train loss")):
        for m in methods:
            rs = [r for r in runs if r["method"] == m]
            xs, mean, lo, hi = _series(rs, key)
            if not xs:
                continue
            c = COLORS.get(m)
            ax.plot(xs, mean, marker="o", color=c, label=f"{m} (n={len(rs)})")
            ax.fill_between(xs, lo, hi, color=c, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{model}: mean over seeds, band = min-max")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _layer_means(runs: Sequence[dict[str, Any]], which: str, key: str) -> tuple[list[str], list[float | None]]:
    names = [lay["name"] for lay in runs[0]["init"][which]]
    vals: list[float | None] = []
    for i in range(len(names)):
        v = [r["init"][which][i][key] for r in runs if r["init"][which][i][key] is not None]
        vals.append(sum(v) / len(v) if v else None)
    return names, vals


def plot_fig3(runs: Sequence[dict[str, Any]], model: str, path: Path, other: str = "nio") -> Path | None:
    """Figure 3 pair: Kaiming (held-out scores of the initial weights) against ``other`` (after rectification)."""
    base = [r for r in runs if r["method"] == "kaiming"] or [r for r in runs if r["method"] == other]
    rect = [r for r in runs if r["method"] == other]
    if not base or not rect:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "norm_ratio", "(a) max/min per-sample gradient norm"),
                           (axes[1], "gc", "(b) GradCosine")):
        names, kv = _layer_means(base, "layers_before", key)
        _, nv = _layer_means(rect, "layers_after", key)
        xs = list(range(len(names)))
        kx = [x for x, v in zip(xs, kv) if v is not None]
        nx = [x for x, v in zip(xs, nv) if v is not None]
        ax.plot(kx, [v for v in kv if v is not None], ".-", color=COLORS["kaiming"], label="Kaiming")
        ax.plot(nx, [v for v in nv if v is not None], ".-", color=COLORS.get(other, "tab:red"), label=other.upper())
        if key == "norm_ratio":
            ax.set_yscale("log")
        ax.set_xlabel("parameter tensor (input -> output)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    mode = rect[0]["init"]["exact_after"].get("mode", "sample")
    fig.suptitle(f"{model}: held-out {mode}-wise gradients per tensor, mean over {len(rect)} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(runs: Sequence[dict[str, Any]], out: Path) -> list[str]:
    files: list[str] = []
    runs = [r for r in runs if "error" not in r]
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model]
        files.append(str(plot_curves(rs, model, out / f"results_{model}_curves.png")))
        p = plot_fig3(rs, model, out / f"results_{model}_fig3.png")
        if p is not None:
            files.append(str(p))
    return files
