"""Engine speed and memory benchmark (issue 2). Run it under the bench lock:

    flock /tmp/initscore-bench.lock .venv/bin/python bench/engine_speed.py            # full
    flock /tmp/initscore-bench.lock .venv/bin/python bench/engine_speed.py --quick    # smoke run

Speed: ResNet-20 (registry, bn=False and bn=True), B=64, CPU. Every quantity is a
ratio to ONE forward+backward of the same batch measured in the same repeat
(interleaved), reported as the median over repeats:
  exact sample-mode GC/GN (target <= 2.0), batch mode D=2 r=0.6 (<= 1.5),
  one batch-mode NIO step (<= 4.5), one exact sample-mode NIO step (<= 5.5).
With BN, batch mode uses bn="batch" (each sub-batch's own statistics, as in training: the
overlapping sub-batches run 92 samples for B=64); the rows "[bn=calibrated]" show the
sample-independent choice, where the disjoint-segment trick applies (one forward/backward
for all segments, statistics measured in the same pass: initscore.segments). The row
"batch floor" is what bn="batch" cannot avoid: one plain forward+backward of the model on
each overlapping sub-batch (no scores, no copies), as a ratio like the others.
A NIO step = objective with second-order graph + gradient w.r.t. the scales + Adam step + clamp.

Memory: peak resident memory (ru_maxrss of a fresh subprocess, which builds the
model and batch, then runs ONE computation) of exact sample-mode GC vs batch mode
on torchvision ResNet-50 at B=64, 224 px (target: exact < 2x batch). On a CUDA
machine the same is measured with torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"sample": 2.0, "batch": 1.5, "nio_batch_step": 4.5, "nio_sample_step": 5.5,
           "batch[bn=calibrated]": 1.5, "nio_batch_step[bn=calibrated]": 4.5}


def _timeit(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def speed(bn: bool, B: int, repeats: int) -> dict:
    import torch
    from torch import nn

    from initscore import bn as bnmod
    from initscore.models import create
    from initscore.nio import Context, ScaledParams, nio_objective, rectify_net
    from initscore.scores import gradcosine, trainable

    torch.manual_seed(0)
    model = create("resnet20", bn=bn)
    x, y = torch.randn(B, 3, 32, 32), torch.randint(0, 10, (B,))

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    def nio_stepper(mode, bn_choice=None):
        bn_mode = bnmod.check_bn_mode(bn_choice, "calibrated" if mode == "sample" else "batch")
        net = rectify_net(model, bn_mode, mode=mode)  # the network rectify() optimizes
        ctx = Context(net=net, loss=None, mode=mode, bn_mode=bn_mode, has_bn=bnmod.has_batchnorm(model),
                      sub_batches=2, overlap=0.6, gamma=1e30)
        sp = ScaledParams(trainable(net))
        leaves = list(sp.scales.values())
        opt = torch.optim.Adam(leaves, lr=1e-3)

        def step():
            obj, _, _ = nio_objective(ctx, sp.params(), x, y)
            grads = torch.autograd.grad(obj, leaves)
            for s, g in zip(leaves, grads):
                s.grad = g
            opt.step()
            sp.clamp(0.01)
        return step

    ops = {
        "sample": lambda: gradcosine(model, (x, y), mode="sample"),
        "batch": lambda: gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.6),
        "nio_batch_step": nio_stepper("batch"),
        "nio_sample_step": nio_stepper("sample"),
    }
    if bn:  # the sample-independent BN choice in batch mode: disjoint segments, no overlap recomputed
        from initscore.scores import batch_splits
        splits = batch_splits(B, 2, 0.6)

        def batch_floor():
            for s, e in splits:
                model.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x[s:e]), y[s:e]).backward()
        ops["batch floor"] = batch_floor
        ops["batch[bn=calibrated]"] = lambda: gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.6,
                                                         bn="calibrated")
        ops["nio_batch_step[bn=calibrated]"] = nio_stepper("batch", "calibrated")
    for fn in [fwd_bwd, *ops.values()]:  # warm-up (vmap tracing, allocator)
        fn()
    base_times, ratios = [], {k: [] for k in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            base = _timeit(fwd_bwd)
            base_times.append(base)
            ratios[name].append(_timeit(fn) / base)
    return {
        "model": f"resnet20(bn={bn})", "B": B, "threads": torch.get_num_threads(), "repeats": repeats,
        "fwd_bwd_s": statistics.median(base_times),
        "ratios": {k: statistics.median(v) for k, v in ratios.items()},
    }


def _mem_child(what: str, B: int, size: int) -> None:
    """Subprocess body: build, run one computation, print peak memory as JSON."""
    import resource

    import torch

    from initscore.models import create
    from initscore.scores import gradcosine

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = create("torchvision:resnet50").to(dev)
    x, y = torch.randn(B, 3, size, size, device=dev), torch.randint(0, 1000, (B,), device=dev)
    setup_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if what == "sample":
        s = gradcosine(model, (x, y), mode="sample")
    else:
        s = gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.6)
    secs = time.perf_counter() - t0
    out = {"what": what, "seconds": secs, "gc": s.gc, "setup_rss_mb": setup_kb / 1024,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cuda:
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def memory(B: int, size: int) -> dict:
    res = {}
    for what in ("batch", "sample"):
        p = subprocess.run([sys.executable, __file__, "--mem-child", what, "--mem-batch", str(B),
                            "--mem-size", str(size)], capture_output=True, text=True, cwd=ROOT, env=os.environ)
        if p.returncode != 0:
            raise SystemExit(f"memory child {what} failed:\n{p.stderr[-2000:]}")
        res[what] = json.loads(p.stdout.strip().splitlines()[-1])
    key = "cuda_peak_mb" if "cuda_peak_mb" in res["batch"] else "peak_rss_mb"
    res["ratio_peak"] = res["sample"][key] / res["batch"][key]
    if key == "peak_rss_mb":  # also above the common setup (torch + model + batch)
        base = max(res["batch"]["setup_rss_mb"], res["sample"]["setup_rss_mb"])
        res["ratio_above_setup"] = (res["sample"][key] - base) / max(1e-9, res["batch"][key] - base)
    res["measure"] = key
    res["B"], res["size"] = B, size
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, small ResNet-50 memory check")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--mem-child", choices=("sample", "batch"), help=argparse.SUPPRESS)
    ap.add_argument("--mem-batch", type=int, default=64, help="ResNet-50 batch for the memory check")
    ap.add_argument("--mem-size", type=int, default=224, help="ResNet-50 image size for the memory check")
    a = ap.parse_args()
    if a.mem_child:
        _mem_child(a.mem_child, a.mem_batch, a.mem_size)
        return
    repeats = a.repeats or (2 if a.quick else 7)
    results = {"speed": [speed(bn, a.batch, repeats) for bn in (False, True)]}
    if not a.no_memory:
        mb, ms = (8, 112) if a.quick else (a.mem_batch, a.mem_size)
        results["memory"] = memory(mb, ms)
    if a.json:
        print(json.dumps(results, indent=2))
        return
    for r in results["speed"]:
        print(f"{r['model']}  B={r['B']}  threads={r['threads']}  repeats={r['repeats']}  "
              f"one forward+backward = {r['fwd_bwd_s']:.3f} s (median)")
        for k, v in r["ratios"].items():
            if k not in TARGETS:
                print(f"  {k:30s} {v:5.2f}x   (no target: the sub-batches' own forward+backward)")
                continue
            ok = "ok" if v <= TARGETS[k] else "OVER"
            print(f"  {k:30s} {v:5.2f}x   (target <= {TARGETS[k]}x: {ok})")
    if "memory" in results:
        m = results["memory"]
        key = m["measure"]
        print(f"torchvision:resnet50 B={m['B']} {m['size']}px, peak memory ({key}):")
        for w in ("batch", "sample"):
            print(f"  {w:6s} {m[w][key]:9.1f} MB   ({m[w]['seconds']:.1f} s, gc {m[w]['gc']:.4f})")
        print(f"  exact/batch peak ratio {m['ratio_peak']:.2f}x (target < 2x: {'ok' if m['ratio_peak'] < 2 else 'OVER'})"
              + (f"; above setup {m['ratio_above_setup']:.2f}x" if "ratio_above_setup" in m else ""))


if __name__ == "__main__":
    main()
