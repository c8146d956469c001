"""Float32 batch mode with calibrated BatchNorm against float64: where the offset comes from.

BN ResNet-20 (init seed 0), 64 CIFAR-10 training images (the batch of bench/official_profile.py), paper profile,
Eq. 7 sub-batches at D=4 r=0.2 and D=2 r=0.6. The float64 reference is the engine in float64, checked against a
first-principles reference (tests/engine/engine_helpers.py: an eval-mode copy holding the batch's biased
statistics). Rows, each the relative difference of GC / GN / g_max to float64: float32 on the fast path
(segments, channels-last input); the fast path in the default memory layout; the plain path; the plain path fed
a channels-last input; and a reference calibrated with the UNBIASED variance (BN's running_var convention).
Then the no-BN ResNet-20 on the fast path (convolutions in channels-last, no BatchNorm). Then torch's
BatchNorm kernels alone, float32 against float64 in both memory layouts, on Gaussian inputs of
ResNet-20's first- and last-stage shapes: max relative error of invstd (the statistics) and of the backward's
grad_weight / grad_bias (reductions over N, H, W) and grad_x. Not a timing; run under the bench lock all the same:

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/calibrated_precision.py
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from engine_helpers import calibrated_batch_reference  # noqa: E402

from initscore import data, fastpath, scores  # noqa: E402
from initscore.dataref import default_cifar10_root  # noqa: E402
from initscore.models import create  # noqa: E402
from initscore.scores import batch_splits, gradcosine  # noqa: E402


def main() -> None:
    td = data.load({"kind": "cifar10", "root": str(default_cifar10_root()), "limit": 512, "batch_size": 64})
    x, y = td.batch(64, 0)
    torch.manual_seed(0)
    net = create("resnet20", bn=True)
    net64, x64 = copy.deepcopy(net).double(), x.double()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={len(y)}")
    for D, r in ((4, 0.2), (2, 0.6)):
        def score(model, inp):  # type: ignore[no-untyped-def]
            return gradcosine(model, (inp, y), mode="batch", sub_batches=D, overlap=r, bn="calibrated")

        ref = score(net64, x64)
        splits = batch_splits(64, D, r, "eq7")
        hand = calibrated_batch_reference(net64, x64, y, splits, correction=0)
        unbiased = calibrated_batch_reference(net64, x64, y, splits, correction=1)
        rows = {"float32 fast path": score(net, x)}
        layout = scores.fast_layout
        scores.fast_layout = lambda t: t
        try:
            rows["float32 fast path, default layout"] = score(net, x)
        finally:
            scores.fast_layout = layout
        with fastpath.plain():
            rows["float32 plain path"] = score(net, x)
            cl = x.contiguous(memory_format=torch.channels_last)
            rows["float32 plain path, channels-last input"] = score(net, cl)

        def rel(a: float, b: float) -> str:
            return f"{abs(a - b) / abs(b):.1e}"

        print(f"D={D} r={r}: float64 engine vs first-principles reference: gc {rel(ref.gc, hand['gc'])} "
              f"gn {rel(ref.gn, hand['gn'])}")
        for name, s in rows.items():
            print(f"  {name:42s} gc {rel(s.gc, ref.gc)}  gn {rel(s.gn, ref.gn)}  g_max {rel(s.g_max, ref.g_max)}")
        print(f"  {'float64, unbiased-variance calibration':42s} gc {rel(unbiased['gc'], ref.gc)}  "
              f"gn {rel(unbiased['gn'], ref.gn)}  g_max {rel(unbiased['g_max'], ref.g_max)}")
    torch.manual_seed(0)
    nobn = create("resnet20", bn=False)
    ref = gradcosine(copy.deepcopy(nobn).double(), (x64, y), mode="batch", sub_batches=4, overlap=0.2)
    s = gradcosine(nobn, (x, y), mode="batch", sub_batches=4, overlap=0.2)
    print(f"no-BN ResNet-20, D=4 r=0.2, float32 fast path (channels-last) vs float64: gc "
          f"{abs(s.gc - ref.gc) / ref.gc:.1e}  gn {abs(s.gn - ref.gn) / ref.gn:.1e}  "
          f"g_max {abs(s.g_max - ref.g_max) / ref.g_max:.1e}")
    kernel_rows()


def kernel_rows() -> None:
    torch.manual_seed(0)
    for shape in ((64, 16, 32, 32), (64, 64, 8, 8)):
        x64 = torch.randn(*shape, dtype=torch.float64) * 0.5 + 1.0
        gy64 = torch.randn(*shape, dtype=torch.float64)
        w64 = torch.ones(shape[1], dtype=torch.float64)
        bn, bwd = torch.ops.aten.native_batch_norm, torch.ops.aten.native_batch_norm_backward
        _, m_ref, i_ref = bn(x64, w64, None, None, None, True, 0.0, 1e-5)
        ref = (i_ref, *bwd(gy64, x64, w64, None, None, m_ref, i_ref, True, 1e-5, [True, True, True]))
        for label, fmt in (("default layout", torch.contiguous_format), ("channels-last", torch.channels_last)):
            x, gy = x64.float().contiguous(memory_format=fmt), gy64.float().contiguous(memory_format=fmt)
            w = w64.float()
            _, m, i = bn(x, w, None, None, None, True, 0.0, 1e-5)
            got = (i, *bwd(gy, x, w, None, None, m, i, True, 1e-5, [True, True, True]))
            err = [float((a.double() - b).abs().max() / b.abs().max()) for a, b in zip(got, ref)]
            print(f"  BN kernel {str(shape):18s} {label:15s} invstd {err[0]:.1e}  grad_x {err[1]:.1e}  "
                  f"grad_w {err[2]:.1e}  grad_b {err[3]:.1e}")


if __name__ == "__main__":
    main()
