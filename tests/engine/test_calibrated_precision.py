"""Precision of batch mode with calibrated BatchNorm against float64 (BN ResNet-20, 64 CIFAR-10 images).

The calibrated statistics are the batch's mean and BIASED variance (the train-mode normalization of the whole
batch). In float64 the engine equals an independent reference built from an eval-mode copy (1e-10); every
float32 route (plain, fast, fast in the default layout) agrees with it to float32 rounding through BatchNorm's
backward, whose size depends on the CPU's kernels (4e-8 relative on one machine, 9e-5 for the plain path on an
AVX-512/AMX one), so float32 is held to F32_TOL; the biased/unbiased distinction (1e-4) is checked in float64.
"""
from __future__ import annotations

import copy

import pytest
import torch

from engine_helpers import calibrated_batch_reference
from initscore import data, fastpath, scores
from initscore.dataref import default_cifar10_root
from initscore.models import create
from initscore.scores import batch_splits, gradcosine

D, R = 4, 0.2
F32_TOL = 3e-4


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    root = default_cifar10_root()
    if root is None:
        pytest.skip("shared CIFAR-10 data not present")
    td = data.load({"kind": "cifar10", "root": str(root), "limit": 512, "batch_size": 64})
    return td.batch(64, 0)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_calibrated_batch_mode_against_float64(monkeypatch):
    x, y = _batch()
    torch.manual_seed(0)
    net = create("resnet20", bn=True)
    net64, x64 = copy.deepcopy(net).double(), x.double()
    splits = batch_splits(64, D, R, "eq7")
    biased = calibrated_batch_reference(net64, x64, y, splits, correction=0)
    unbiased = calibrated_batch_reference(net64, x64, y, splits, correction=1)
    gc_b, gn_b = biased["gc"], biased["gn"]
    ours64 = gradcosine(net64, (x64, y), mode="batch", sub_batches=D, overlap=R, bn="calibrated")
    assert _rel(ours64.gc, gc_b) < 1e-10 and _rel(ours64.gn, gn_b) < 1e-10
    # the test tells the two conventions apart: unbiased statistics move GC by ~1e-4
    assert _rel(unbiased["gc"], gc_b) > 5e-5

    def f32() -> scores.GradScores:
        return gradcosine(net, (x, y), mode="batch", sub_batches=D, overlap=R, bn="calibrated")

    with fastpath.plain():
        plain = f32()
    assert _rel(plain.gc, gc_b) < F32_TOL and _rel(plain.gn, gn_b) < F32_TOL
    fast = f32()
    assert _rel(fast.gc, gc_b) < F32_TOL and _rel(fast.gn, gn_b) < F32_TOL and _rel(fast.g_max, ours64.g_max) < F32_TOL
    # the fast route (one-pass segments, calibration in its forward) in the default memory layout
    monkeypatch.setattr(scores, "fast_layout", lambda t: t)
    default_layout = f32()
    assert _rel(default_layout.gc, gc_b) < F32_TOL and _rel(default_layout.gn, gn_b) < F32_TOL
