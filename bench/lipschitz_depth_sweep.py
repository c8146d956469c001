"""Real-data check of the LDLT paper's closing claim (He init still trains better than the
variance-preserving scale): a depth sweep of the L-Lipschitz MLP on MNIST.

Data: the official MNIST test set (10,000 images, ../shared/data/mnist_test), split by a
seeded permutation into 8,000 training and 2,000 held-out test images (the train-image
files are not available offline). Inputs normalized with the MNIST mean/std, flattened (784).

Grid: depth in {2, 4, 8, 16} x init in {He (init_scale = 1), variance-preserving
(init_scale from recommend_scale(target 0.9, m = n = width, alpha = 1))} x optimizer in
{AdamW lr 1e-3 wd 1e-4, SGD lr 0.05 momentum 0.9} x activation in {maxmin, relu};
width 128, alpha 1, whole-network Lipschitz bound 1 (lipschitz arg), batch 128, EPOCHS epochs,
cross-entropy on logits scaled by a fixed temperature 1/0.1 (a standard trick for
1-Lipschitz classifiers, since logit margins are bounded by the input distance).
Reports: output variance of the last layer at init (propagation report), and final test accuracy.
CPU only, one thread.

Run:  flock /tmp/initscore-bench.lock .venv/bin/python bench/lipschitz_depth_sweep.py [--epochs 3] [--seeds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import initscore.models as models  # noqa: E402
from initscore import data as data_mod  # noqa: E402
from initscore.propagation import report  # noqa: E402
from initscore.wishart import recommend_scale  # noqa: E402

TEMPERATURE = 10.0


def load_mnist(seed: int = 0):
    root = data_mod.default_mnist_root()
    if root is None:
        raise SystemExit("MNIST test set not found (../shared/data/mnist_test)")
    td = data_mod.load({"kind": "mnist", "root": root, "split": "test"})
    train, test = td.split(2000, seed=seed)
    flat = lambda t: t.x.reshape(t.x.shape[0], -1)  # noqa: E731
    return flat(train), train.y, flat(test), test.y


def run_one(xtr, ytr, xte, yte, *, depth, width, init_scale, opt_name, activation, epochs, seed):
    torch.manual_seed(seed)
    net = models.create("lipschitz_mlp", in_features=xtr.shape[1], width=width, depth=depth, num_classes=10,
                        alpha=1.0, init_scale=init_scale, lipschitz=1.0, activation=activation)
    rep = report(net, (xte[:512], yte[:512]))
    init_out_var = rep.layers[-1].forward_var
    first_var = rep.layers[0].forward_var
    if opt_name == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    n = xtr.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            loss = torch.nn.functional.cross_entropy(TEMPERATURE * net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((net(xte).argmax(1) == yte).float().mean())
    return {"first_layer_var": first_var, "init_out_var": init_out_var, "test_acc": acc, "final_loss": float(loss.detach())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depths", default="2,4,8,16")
    ap.add_argument("--json", default=None, help="also write all rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_mnist()
    vp = recommend_scale(0.9, args.width, args.width, 1.0, samples=200, seed=0).init_scale
    print(f"MNIST test set split 8000/2000; width {args.width}; He init_scale 1.0, variance-preserving "
          f"init_scale {vp:.3f} (target Var 0.9 for a {args.width}x{args.width} layer, alpha 1)")
    rows = []
    print(f"{'act':>6} {'opt':>6} {'depth':>5} {'init':>5} {'Var first':>10} {'Var out@init':>13} {'test acc':>14}")
    for activation in ("maxmin", "relu"):
        for opt_name in ("adamw", "sgd"):
            for depth in [int(d) for d in args.depths.split(",")]:
                for init_name, scale in (("he", 1.0), ("vp", vp)):
                    res = [run_one(xtr, ytr, xte, yte, depth=depth, width=args.width, init_scale=scale,
                                   opt_name=opt_name, activation=activation, epochs=args.epochs, seed=s)
                           for s in range(args.seeds)]
                    accs = [r["test_acc"] for r in res]
                    row = {"activation": activation, "optimizer": opt_name, "depth": depth, "init": init_name,
                           "init_scale": scale, "first_layer_var": res[0]["first_layer_var"],
                           "init_out_var": res[0]["init_out_var"], "test_acc_mean": statistics.mean(accs),
                           "test_acc_all": accs}
                    rows.append(row)
                    spread = f" (min {min(accs):.3f})" if len(accs) > 1 else ""
                    print(f"{activation:>6} {opt_name:>6} {depth:5d} {init_name:>5} {row['first_layer_var']:10.3g} "
                          f"{row['init_out_var']:13.3g} {row['test_acc_mean']:8.4f}{spread}", flush=True)
    wins = {}
    for r in rows:
        if r["init"] == "he":
            other = next(o for o in rows if o["init"] == "vp" and all(
                o[k] == r[k] for k in ("activation", "optimizer", "depth")))
            diff = r["test_acc_mean"] - other["test_acc_mean"]
            key = "tie" if abs(diff) < 1e-9 else "he" if diff > 0 else "vp"
            wins[key] = wins.get(key, 0) + 1
    print(f"higher test accuracy: He in {wins.get('he', 0)} of {len(rows) // 2} settings, "
          f"variance-preserving in {wins.get('vp', 0)}, ties {wins.get('tie', 0)}")
    print(f"{time.perf_counter() - t0:.0f} s, epochs {args.epochs}, seeds {args.seeds}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
