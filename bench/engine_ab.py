"""A/B timings of the engine's speed levers, alternating the two variants repeat by repeat.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/engine_ab.py --repeats 12

ResNet-20, B=64, CIFAR-shaped Gaussian batch. Each row prints the median ratio of each variant to one
plain forward+backward of the model, timed just before it in the same repeat, with the two variants'
order swapped every repeat (so a slow phase of the machine, or the order of the calls, hits both alike):

- NIO batch-step (bn="batch" / "calibrated" / no BN): torch's convolution vs initscore.fast_conv
  (the scoring copy with and without fast_conv.install);
- batch-mode score, bn="batch": default layout vs channels-last (scores.fast_layout inside subbatch_grads);
- the floor of bn="batch": 2 x 46 samples vs one batch of 92, plain model, default layout.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ab(base: Callable[[], None], variants: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for f in variants.values():
        f()
        f()
    names = list(variants)
    ratios: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            base()
            b = time.perf_counter() - t0
            t0 = time.perf_counter()
            variants[k]()
            ratios[k].append((time.perf_counter() - t0) / b)
    return {k: statistics.median(v) for k, v in ratios.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=12)
    args = ap.parse_args()

    import torch
    from torch import nn

    from initscore import bn as bnmod
    from initscore import fast_conv, scores
    from initscore.models import create
    from initscore.nio import Context, ScaledParams, nio_objective
    from initscore.scores import gradcosine, trainable

    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    print(f"torch threads {torch.get_num_threads()}, repeats {args.repeats}; median ratio to one forward+backward")

    for has_bn, bn_mode in ((True, "batch"), (True, "calibrated"), (False, "batch")):
        model = create("resnet20", bn=has_bn)

        def fwd_bwd(model=model) -> None:
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()

        def stepper(fast: bool, model=model, bn_mode=bn_mode) -> Callable[[], None]:
            net = bnmod.scoring_copy(model, bn_mode, primitive=False)
            if fast:
                fast_conv.install(net)
            ctx = Context(net=net, loss=None, mode="batch", bn_mode=bn_mode, has_bn=bnmod.has_batchnorm(model),
                          sub_batches=2, overlap=0.6, gamma=1e30)
            sp = ScaledParams(trainable(net))
            leaves = list(sp.scales.values())
            opt = torch.optim.Adam(leaves, lr=1e-3)

            def step() -> None:
                obj, _, _ = nio_objective(ctx, sp.params(), x, y)
                for s, g in zip(leaves, torch.autograd.grad(obj, leaves)):
                    s.grad = g
                opt.step()
                sp.clamp(0.01)
            return step

        r = _ab(fwd_bwd, {"torch conv": stepper(False), "fast_conv": stepper(True)}, args.repeats)
        label = f"NIO batch step, {'bn=' + repr(bn_mode) if has_bn else 'no BN'}"
        print(f"{label:36s} " + "   ".join(f"{k} {v:.2f}x" for k, v in r.items()), flush=True)

    model = create("resnet20")

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    real = scores.fast_layout

    def score(layout: Callable) -> Callable[[], None]:
        def run() -> None:
            scores.fast_layout = layout
            try:
                gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.6)
            finally:
                scores.fast_layout = real
        return run

    r = _ab(fwd_bwd, {"default layout": score(lambda t: t), "channels-last": score(real)}, args.repeats)
    print(f"{'batch-mode score, bn=batch':36s} " + "   ".join(f"{k} {v:.2f}x" for k, v in r.items()), flush=True)

    x92, y92 = torch.randn(92, 3, 32, 32), torch.randint(0, 10, (92,))

    def two() -> None:
        for s, e in ((0, 46), (46, 92)):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x92[s:e]), y92[s:e]).backward()

    def one() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x92), y92).backward()

    r = _ab(fwd_bwd, {"2 x 46": two, "1 x 92": one}, args.repeats)
    print(f"{'bn=batch floor, 92 samples':36s} " + "   ".join(f"{k} {v:.2f}x" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
