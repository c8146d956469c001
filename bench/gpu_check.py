"""CUDA numerics check of the engine: GradCosine / GradNorm / g_max on the GPU against float64 on the CPU.

    python bench/gpu_check.py [--root DIR] [--batch 32] [--json FILE]

Same weights, same real CIFAR-10 images (the first ``--batch`` of the test split), scored three ways:
float64 on the CPU (the reference), float32 on CUDA with TF32 convolutions/matmuls off, and float32 on
CUDA with PyTorch's defaults (cuDNN convolutions may use TF32). Prints |x - ref| / |ref| for gc, gn,
g_max and the largest per-tensor gc error, for sample mode (exact, Algorithm 1) and batch mode (Eq. 7,
D=2, r=0.6), on ResNet-20 without and with BatchNorm and on ResNet-110 without BN.
Exits 1 when a float32 (TF32 off) error exceeds 1e-3 or anything is not finite; on a machine without
CUDA it says so and exits 2. Run it on the device machine (bench/gpu_presets.sh calls it).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="CIFAR-10 root (default ../shared/data/cifar10_jpeg)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to dry-run this script")
    args = ap.parse_args(argv)

    import torch

    from initscore import data as datamod
    from initscore import models
    from initscore.scores import gradcosine

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing checked")
        return 2
    root = args.root or datamod.default_cifar10_root()
    ds = datamod.load({"kind": "cifar10", "root": str(root), "split": "test", "limit": args.batch, "seed": 0,
                       "batch_size": 1})
    x, y = ds.x[: args.batch], ds.y[: args.batch]
    rows = []
    worst = 0.0
    finite = True
    saved_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        for spec in ({"arch": "resnet20", "args": {"bn": False}}, {"arch": "resnet20", "args": {"bn": True}},
                     {"arch": "resnet110", "args": {"bn": False}}):
            torch.manual_seed(0)
            net = models.build(spec)
            for mode in ("sample", "batch"):
                kw = {"mode": mode, "sub_batches": 2, "overlap": 0.6 if mode == "batch" else 0.0}
                ref = gradcosine(copy.deepcopy(net).double(), (x.double(), y), **kw)
                out = {}
                for tf32 in (False, True):
                    torch.backends.cudnn.allow_tf32 = tf32
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    r = gradcosine(copy.deepcopy(net).to(dev), (x.to(dev), y.to(dev)), **kw)
                    err = {k: abs(getattr(r, k) - getattr(ref, k)) / max(abs(getattr(ref, k)), 1e-30)
                           for k in ("gc", "gn", "g_max")}
                    err["layer_gc_abs"] = max(abs(a.gc - b.gc) for a, b in zip(r.layers, ref.layers))
                    finite &= all(math.isfinite(getattr(r, k)) for k in ("gc", "gn", "g_max"))
                    out["tf32" if tf32 else "fp32"] = {"gc": r.gc, "gn": r.gn, "g_max": r.g_max, "err": err}
                    if not tf32:
                        worst = max(worst, err["gc"], err["gn"], err["g_max"])
                rows.append({"model": f"{spec['arch']} bn={spec['args']['bn']}", "mode": mode,
                             "ref": {"gc": ref.gc, "gn": ref.gn, "g_max": ref.g_max}, **out})
    finally:  # process-wide flags: leave them as found
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_tf32
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu (dry run)"
    print(f"device {name}, torch {torch.__version__}, batch {len(y)} CIFAR-10 test images")
    print(f"{'model':22} {'mode':6} {'gc (f64 cpu)':>13} {'rel err fp32':>13} {'rel err tf32':>13}"
          f" {'gn rel fp32':>12} {'gmax rel fp32':>13} {'layer gc abs fp32':>17}")
    for r in rows:
        print(f"{r['model']:22} {r['mode']:6} {r['ref']['gc']:13.6f} {r['fp32']['err']['gc']:13.2e}"
              f" {r['tf32']['err']['gc']:13.2e} {r['fp32']['err']['gn']:12.2e} {r['fp32']['err']['g_max']:13.2e}"
              f" {r['fp32']['err']['layer_gc_abs']:17.2e}")
    ok = finite and worst <= 1e-3
    print(f"worst float32 (TF32 off) relative error {worst:.2e}: {'ok' if ok else 'FAILED'} (bound 1e-3)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "worst_fp32": worst, "ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
