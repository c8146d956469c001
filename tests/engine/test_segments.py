"""One-pass segment gradients (initscore.segments) against per-sample references, float64."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore import bn as bnmod
from initscore.models import create
from initscore.scores import batch_splits, gradcosine, subbatch_grads, trainable
from initscore.segments import segmented_copy

from engine_helpers import flat_grad, tiny_conv


def _net(model: nn.Module, bn_mode: str) -> nn.Module:
    return bnmod.scoring_copy(model, bn_mode, primitive=False)


@pytest.mark.parametrize("bn,bn_mode", [(False, "batch"), (True, "calibrated"), (True, "per_sample")])
def test_segment_grads_equal_per_sample_sums(bn, bn_mode):
    """g_S from one pass == sum over i in S of the per-sample gradients (hand loop, float64)."""
    torch.manual_seed(0)
    model = tiny_conv(bn=bn, act=nn.GELU).double()
    x, y = torch.randn(7, 3, 6, 6, dtype=torch.float64), torch.randint(0, 5, (7,))
    net = _net(model, bn_mode)
    params = {n: t.requires_grad_(True) for n, t in ((n, t.detach().clone()) for n, t in trainable(net).items())}
    if bn and bn_mode == "calibrated":  # the reference freezes the whole batch's statistics
        bnmod.calibrate(net, params, x)
    per_sample = []
    for i in range(7):
        out = torch.func.functional_call(net, params, (x[i:i + 1],))
        per_sample.append(flat_grad_of(params, nn.functional.cross_entropy(out, y[i:i + 1], reduction="sum")))
    seg = segmented_copy(net)
    assert seg is not None
    sizes = [2, 4, 1]
    got = seg.segment_grads(params, x, y, sizes)
    start = 0
    for s, size in enumerate(sizes):
        for n in params:
            ref = sum(per_sample[i][n] for i in range(start, start + size))
            torch.testing.assert_close(got[s][n], ref, rtol=1e-10, atol=1e-12)
        start += size


def flat_grad_of(params: dict[str, torch.Tensor], loss: torch.Tensor) -> dict[str, torch.Tensor]:
    gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(params.items(), gs)}


@pytest.mark.parametrize("bn,bn_mode", [(False, "batch"), (True, "calibrated"), (True, "per_sample")])
def test_fused_and_one_pass_per_segment_agree_to_second_order(bn, bn_mode):
    """Sub-batch gradients and the gradient of a function of them (create_graph) match the per-segment route."""
    torch.manual_seed(1)
    model = create("resnet20", bn=bn, num_classes=5).double()
    x, y = torch.randn(10, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (10,))
    net = _net(model, bn_mode)
    w0 = {n: t.detach().clone() for n, t in trainable(net).items()}
    splits = batch_splits(10, 3, 0.5)  # [0,4) [2,6) [4,8): rows 8, 9 in no sub-batch
    results = []
    for fused in (True, False):
        s = {n: torch.tensor(0.9, dtype=torch.float64, requires_grad=True) for n in w0}
        params = {n: s[n] * w for n, w in w0.items()}
        if bn and bn_mode == "calibrated" and not fused:
            bnmod.calibrate(net, {n: p.detach() for n, p in params.items()}, x)
        grads = subbatch_grads(net, params, x, y, None, splits, coupled=False, create_graph=True,
                               segnet=segmented_copy(net) if fused else None)
        f = sum((g[n] * g[n]).sum() * (k + 1) for k, g in enumerate(grads) for n in g)
        results.append(([{n: t.detach() for n, t in g.items()} for g in grads],
                        torch.autograd.grad(f, list(s.values()))))
    (ga, da), (gb, db) = results
    for a, b in zip(ga, gb):
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(torch.stack(da), torch.stack(db), rtol=1e-9, atol=1e-12)


class _TokenNet(nn.Module):
    """Owns a parameter directly AND has children (like ViT's class token): not segmentable."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.randn(4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x + self.offset)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("make,bn_mode", [
    (lambda: _TokenNet(), "batch"),
    (lambda: _Tied(), "batch"),
    (lambda: tiny_conv(bn=True), "batch"),  # batch statistics couple the samples
])
def test_unsupported_networks_fall_back_with_the_same_scores(make, bn_mode):
    torch.manual_seed(2)
    model = make().double()
    assert segmented_copy(_net(model, bn_mode)) is None
    x = torch.randn(8, 4, dtype=torch.float64) if not isinstance(model, nn.Sequential) \
        else torch.randn(8, 3, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    s = gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.5, bn=bn_mode)
    assert s.n == 2 and 0.0 < s.gn and s.gc <= 1.0 + 1e-12


def test_batch_mode_calibrated_matches_hand_split_reference():
    """Batch mode with calibrated BN (one-pass route) == hand-computed sub-batch gradients of a frozen-BN copy."""
    from engine_helpers import calibrated_eval_copy
    torch.manual_seed(3)
    model = tiny_conv(bn=True, act=nn.GELU).double()
    x, y = torch.randn(9, 3, 6, 6, dtype=torch.float64), torch.randint(0, 5, (9,))
    ref_model = calibrated_eval_copy(model, x)
    grads = []
    for s, e in batch_splits(9, 2, 0.6):
        grads.append(flat_grad(ref_model, nn.functional.cross_entropy(ref_model(x[s:e]), y[s:e])))
    g = [torch.cat(list(d.values())) for d in grads]
    norms = torch.stack([v.norm() for v in g])
    gc_ref = float(sum((g[i] @ g[j]) / (norms[i] * norms[j]) for i in range(2) for j in range(2)) / 4)
    s = gradcosine(model, (x, y), mode="batch", sub_batches=2, overlap=0.6, bn="calibrated")
    assert s.gc == pytest.approx(gc_ref, rel=1e-10)
    assert s.gn == pytest.approx(float(norms.mean()), rel=1e-10)
