"""Trained init-scale sweep of the LDLT L-Lipschitz MLP on a real binary task: optimizer x init scale x depth.

The LDLT paper's experiments (Juston et al.) cross SGD and AdamW with a sweep of trained initialization scales
and report test AUC on a binary task (Higgs there). Here: MNIST one-vs-rest ("is it digit DIGIT?", default 8)
on the official MNIST test set (../shared/data/mnist_test; the only MNIST images here), split by a seeded
permutation into 8,000 training and 2,000 test images, 2x2 average-pooled to 14x14 = 196 inputs and
standardized. Model: lipschitz_mlp (width WIDTH, depth in DEPTHS, MaxMin activations, alpha 1, whole-network
Lipschitz bound 1, one logit scaled by a fixed temperature 10, binary cross-entropy; the bound limits logit
margins, as in the depth sweep). Init scales: sigma^2 = c/n for c in {1/3 (PyTorch's default variance), 1 (He),
2, 10, 30, 100}. Optimizers: SGD (lr 0.05, momentum 0.9) and AdamW (lr 1e-3, weight decay 1e-4); batch 128.
Per epoch (epoch 0 = at initialization), on the test set: AUC (Mann-Whitney), linear CKA between the inputs and
the last hidden representation (on 512 test inputs), and the variance of every LDLT layer's output.
Writes bench/results/lipschitz_init_sweep.json and docs/figures/lipschitz_sweep_{auc,cka,var}.png; prints a
table and which (optimizer, scale) wins on final AUC per depth, with the spread over seeds.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/lipschitz_init_sweep.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import initscore.models as models  # noqa: E402
from initscore import data as data_mod  # noqa: E402
from initscore.lipschitz import LDLTLipschitzLinear  # noqa: E402
from initscore.propagation import linear_cka  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = (("1/(3n)", 1 / 3), ("1/n", 1.0), ("2/n", 2.0), ("10/n", 10.0), ("30/n", 30.0), ("100/n", 100.0))
TEMPERATURE = 10.0


def load(digit: int, seed: int = 0):
    root = data_mod.default_mnist_root()
    if root is None:
        raise SystemExit("MNIST test set not found (../shared/data/mnist_test)")
    td = data_mod.load({"kind": "mnist", "root": root, "split": "test"})
    train, test = td.split(2000, seed=seed)

    def prep(t):
        x = F.avg_pool2d(t.x.float().reshape(-1, 1, 28, 28), 2).reshape(t.x.shape[0], -1)
        return x, (t.y == digit).float()

    xtr, ytr = prep(train)
    xte, yte = prep(test)
    mu, sd = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True).clamp_min(1e-6)
    return (xtr - mu) / sd, ytr, (xte - mu) / sd, yte


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels > 0.5], scores[labels < 0.5]
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


def measure(net, xte, yte, probe: int = 512) -> dict:
    layers = [m for m in net.modules() if isinstance(m, LDLTLipschitzLinear)]
    outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach())) for m in layers]
    with torch.no_grad():
        net(xte[:probe])
        for h in hooks:
            h.remove()
        logits = net(xte).squeeze(1)
    variances = [float(o.var()) for o in outs]
    hidden = outs[-2] if len(outs) > 1 else outs[-1]
    return {"auc": auc(logits, yte), "cka": linear_cka(xte[:probe], hidden), "layer_var": variances}


def run_one(data, *, depth: int, width: int, c: float, opt_name: str, epochs: int, seed: int) -> dict:
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = models.create("lipschitz_mlp", in_features=xtr.shape[1], width=width, depth=depth, num_classes=1,
                        alpha=1.0, init_scale=math.sqrt(c), lipschitz=1.0, activation="maxmin")
    if opt_name == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    hist = [measure(net, xte, yte)]
    n = xtr.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            loss = F.binary_cross_entropy_with_logits(TEMPERATURE * net(xtr[idx]).squeeze(1), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        hist.append(measure(net, xte, yte))
    return {"history": hist, "final_loss": float(loss.detach())}


def plots(rows: list[dict], depths: list[int], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    xs = [c for _, c in SCALES]
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), sharey=True)
    for ax, depth in zip(axes, depths):
        for opt_name, style in (("sgd", "o-"), ("adamw", "s--")):
            sel = [r for r in rows if r["depth"] == depth and r["optimizer"] == opt_name]
            sel.sort(key=lambda r: r["c"])
            ax.errorbar([r["c"] for r in sel], [r["auc_mean"] for r in sel], yerr=[r["auc_sd"] for r in sel],
                        fmt=style, capsize=3, label=opt_name)
        ax.set_xscale("log")
        ax.set_xticks(xs, [lab for lab, _ in SCALES], rotation=45)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("init variance sigma^2")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test AUC (mean +- sd over seeds)")
    axes[0].legend()
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "lipschitz_sweep_auc.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    deepest = max(depths)
    for key, ylabel, fname in (("cka", "input-hidden linear CKA", "lipschitz_sweep_cka.png"),
                               ("out_var", "last LDLT layer output variance", "lipschitz_sweep_var.png")):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
        for ax, opt_name in zip(axes, ("sgd", "adamw")):
            for lab, c in SCALES:
                r = next(r for r in rows if r["depth"] == deepest and r["optimizer"] == opt_name and r["c"] == c)
                ax.plot(range(len(r[key + "_per_epoch"])), r[key + "_per_epoch"], marker=".", label=lab)
            ax.set_title(f"{opt_name}, depth {deepest} (seed mean)")
            ax.set_xlabel("epoch (0 = init)")
            ax.grid(alpha=0.3)
            if key == "out_var":
                ax.set_yscale("log")
        axes[0].set_ylabel(ylabel)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, fname))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depths", default="2,4,8")
    ap.add_argument("--digit", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "lipschitz_init_sweep.json"))
    ap.add_argument("--figures", default=os.path.join(ROOT, "docs", "figures"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = load(args.digit)
    depths = [int(d) for d in args.depths.split(",")]
    print(f"MNIST test set, digit {args.digit} vs rest, 8000/2000 split, positives {int(data[1].sum())} train / "
          f"{int(data[3].sum())} test; width {args.width}, epochs {args.epochs}, seeds {args.seeds}, "
          f"torch threads {torch.get_num_threads()}")
    rows = []
    print("| optimizer | depth | sigma^2 | AUC at init | final AUC (mean +- sd) | CKA init -> final | out var init -> final |")
    print("|---|---|---|---|---|---|---|")
    for opt_name in ("sgd", "adamw"):
        for depth in depths:
            for lab, c in SCALES:
                res = [run_one(data, depth=depth, width=args.width, c=c, opt_name=opt_name, epochs=args.epochs,
                               seed=s) for s in range(args.seeds)]
                final = [r["history"][-1]["auc"] for r in res]
                per_epoch = lambda f: [statistics.mean(f(r["history"][e]) for r in res)  # noqa: E731
                                       for e in range(args.epochs + 1)]
                row = {"optimizer": opt_name, "depth": depth, "scale": lab, "c": c, "auc_final": final,
                       "auc_mean": statistics.mean(final), "auc_sd": statistics.stdev(final) if len(final) > 1 else 0.0,
                       "auc_per_epoch": per_epoch(lambda h: h["auc"]),
                       "cka_per_epoch": per_epoch(lambda h: h["cka"] if h["cka"] is not None else float("nan")),
                       "out_var_per_epoch": per_epoch(lambda h: h["layer_var"][-1]),
                       "layer_var_init": [statistics.mean(r["history"][0]["layer_var"][i] for r in res)
                                          for i in range(depth)],
                       "layer_var_final": [statistics.mean(r["history"][-1]["layer_var"][i] for r in res)
                                           for i in range(depth)],
                       "histories": [r["history"] for r in res]}
                rows.append(row)
                print(f"| {opt_name} | {depth} | {lab} | {row['auc_per_epoch'][0]:.3f} | {row['auc_mean']:.4f} +- "
                      f"{row['auc_sd']:.4f} | {row['cka_per_epoch'][0]:.3f} -> {row['cka_per_epoch'][-1]:.3f} | "
                      f"{row['out_var_per_epoch'][0]:.3g} -> {row['out_var_per_epoch'][-1]:.3g} |", flush=True)
    print()
    for depth in depths:
        sel = sorted((r for r in rows if r["depth"] == depth), key=lambda r: r["auc_mean"], reverse=True)
        best, second = sel[0], sel[1]
        print(f"depth {depth}: best {best['optimizer']} {best['scale']} AUC {best['auc_mean']:.4f} +- "
              f"{best['auc_sd']:.4f} (seeds {', '.join(f'{a:.4f}' for a in best['auc_final'])}); next "
              f"{second['optimizer']} {second['scale']} {second['auc_mean']:.4f} +- {second['auc_sd']:.4f}")
    for opt_name in ("sgd", "adamw"):
        means = {lab: statistics.mean(r["auc_mean"] for r in rows if r["optimizer"] == opt_name and r["scale"] == lab)
                 for lab, _ in SCALES}
        print(f"{opt_name}: mean final AUC over depths by scale: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
    os.makedirs(args.figures, exist_ok=True)
    for p in plots(rows, depths, args.figures):
        print("wrote", os.path.relpath(p, ROOT))
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
