"""GradCosine/GradNorm against naive float64 references (tests/engine/conftest.py)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from initscore.errors import NonFiniteError, OptionsError
from initscore.scores import GradScores, batch_splits, gradcosine

from engine_helpers import calibrated_eval_copy, flat_grad, naive_scores, tiny_conv, tiny_mlp

F = nn.functional


def _data(B=7, shape=(3, 6, 6), classes=5):
    x = torch.randn(B, *shape, dtype=torch.float64)
    y = torch.randint(0, classes, (B,))
    return x, y


def _assert_close(s: GradScores, ref: dict, rtol=1e-10):
    assert s.gc == pytest.approx(ref["gc"], rel=rtol)
    assert s.gn == pytest.approx(ref["gn"], rel=rtol)
    assert s.g_max == pytest.approx(ref["g_max"], rel=rtol)
    assert s.g_min == pytest.approx(ref["g_min"], rel=rtol)
    for layer in s.layers:
        r = ref["layers"][layer.name]
        if r["gn"] < 1e-9 * ref["gn"]:  # e.g. a conv bias before BN: gradient is rounding noise, no direction
            assert layer.gn < 1e-9 * ref["gn"]
            continue
        assert layer.gc == pytest.approx(r["gc"], rel=rtol), layer.name
        assert layer.gn == pytest.approx(r["gn"], rel=rtol), layer.name
        assert layer.norm_ratio == pytest.approx(r["norm_ratio"], rel=rtol), layer.name


@pytest.mark.parametrize("chunk", [None, 3, 1])
def test_sample_mode_matches_naive_loop_float64(chunk):
    net = tiny_conv().double()
    x, y = _data()
    ref = naive_scores([flat_grad(net, F.cross_entropy(net(x[i:i + 1]), y[i:i + 1])) for i in range(len(x))])
    s = gradcosine(net, (x, y), mode="sample", chunk_size=chunk)
    assert s.n == 7 and s.mode == "sample" and s.bn is None
    assert [l.name for l in s.layers] == [n for n, _ in net.named_parameters()]
    assert [l.numel for l in s.layers] == [p.numel() for p in net.parameters()]
    _assert_close(s, ref)
    # sanity of the definition: GC includes i=j so it is >= 1/B for any gradients? no: only sum_ij cos >= 0 holds
    assert s.gc >= 0.0


def test_identical_samples_give_gc_one():
    net = tiny_mlp().double()
    x = torch.randn(1, 6, dtype=torch.float64).repeat(5, 1)
    y = torch.full((5,), 2)
    s = gradcosine(net, (x, y))
    assert s.gc == pytest.approx(1.0, rel=1e-12)
    assert s.g_max == pytest.approx(s.g_min, rel=1e-12)


def test_custom_loss_sample_mode():
    net = tiny_mlp().double()
    x = torch.randn(6, 6, dtype=torch.float64)
    t = torch.randn(6, 4, dtype=torch.float64)
    mse = lambda out, tgt: ((out - tgt) ** 2).mean()  # noqa: E731
    ref = naive_scores([flat_grad(net, mse(net(x[i:i + 1]), t[i:i + 1])) for i in range(6)])
    _assert_close(gradcosine(net, (x, t), loss=mse), ref)


def test_bn_calibrated_matches_hand_calibrated_eval_loop_and_is_chunk_independent():
    net = tiny_conv(bn=True).double()
    x, y = _data(B=6)
    ev = calibrated_eval_copy(net, x)
    ref = naive_scores([flat_grad(ev, F.cross_entropy(ev(x[i:i + 1]), y[i:i + 1])) for i in range(6)])
    whole = gradcosine(net, (x, y), mode="sample", bn="calibrated", chunk_size=6)
    single = gradcosine(net, (x, y), mode="sample", bn="calibrated", chunk_size=1)
    assert whole.bn == "calibrated"
    _assert_close(whole, ref)
    _assert_close(single, ref)
    # sample-independent: sample 0 scored inside a batch equals sample 0 alone through the calibrated network
    g_in_batch = flat_grad(ev, F.cross_entropy(ev(x), y, reduction="none")[0])
    g_alone = flat_grad(ev, F.cross_entropy(ev(x[:1]), y[:1]))
    for n in g_alone:
        torch.testing.assert_close(g_in_batch[n], g_alone[n], rtol=1e-12, atol=1e-14)


def test_bn_batch_sample_mode_matches_full_batch_loop():
    net = tiny_conv(bn=True).double()
    x, y = _data(B=5)
    grads = []
    for i in range(5):
        m = copy.deepcopy(net).train()
        out = m(x)
        grads.append(flat_grad(m, F.cross_entropy(out[i:i + 1], y[i:i + 1])))
    ref = naive_scores(grads)
    s = gradcosine(net, (x, y), mode="sample", bn="batch", chunk_size=2)
    assert s.bn == "batch"
    _assert_close(s, ref)


def test_bn_per_sample_matches_single_sample_train_mode_loop():
    net = tiny_conv(bn=True).double()
    x, y = _data(B=5)
    grads = []
    for i in range(5):
        m = copy.deepcopy(net).train()  # a batch of one: BN statistics are that sample's own
        grads.append(flat_grad(m, F.cross_entropy(m(x[i:i + 1]), y[i:i + 1])))
    _assert_close(gradcosine(net, (x, y), mode="sample", bn="per_sample"), naive_scores(grads))


# ------------------------------------------------------------ batch mode
def test_batch_splits_hand_computed():
    # B=128, D=2, r=0.6: N = ceil(128/1.4) = ceil(91.43) = 92; d=2 starts at round(92*0.4) = round(36.8) = 37
    assert batch_splits(128, 2, 0.6) == [(0, 92), (37, 128)]
    # B=64, D=2, r=0.6: N = ceil(45.71) = 46; start round(18.4) = 18; 18 + 46 = 64
    assert batch_splits(64, 2, 0.6) == [(0, 46), (18, 64)]
    # B=10, D=3, r=0.5: N = ceil(10/2.5) = 4; starts round(0), round(2.0), round(4.0)
    assert batch_splits(10, 3, 0.5) == [(0, 4), (2, 6), (4, 8)]
    # B=7, D=2, r=0: N = ceil(3.5) = 4; second starts at 4 and is clipped to 7
    assert batch_splits(7, 2, 0.0) == [(0, 4), (4, 7)]


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("D,r", [(2, 0.6), (3, 0.5), (2, 0.0)])
def test_batch_mode_matches_hand_subbatches(bn, D, r):
    net = tiny_conv(bn=bn).double()
    x, y = _data(B=10)
    grads = []
    for s, e in batch_splits(10, D, r):
        m = copy.deepcopy(net).train()
        grads.append(flat_grad(m, F.cross_entropy(m(x[s:e]), y[s:e])))
    ref = naive_scores(grads)
    out = gradcosine(net, (x, y), mode="batch", sub_batches=D, overlap=r)
    assert out.n == D and out.mode == "batch" and out.bn == ("batch" if bn else None)
    _assert_close(out, ref, rtol=1e-9)


def test_batch_statistics_first_order_kernel_equals_double_backward_function():
    """gradcosine's batch mode runs BN through torch's own autograd (set_first_order); NIO keeps BatchStatNorm.
    First-order gradients must not depend on which one runs."""
    from initscore import bn as bnmod
    from initscore.scores import subbatch_grads, trainable

    net = tiny_conv(bn=True).double()
    x, y = _data(B=10)
    splits = batch_splits(10, 2, 0.6)
    out = {}
    for first_order in (False, True):
        copy_ = bnmod.scoring_copy(net, "batch", primitive=False)
        bnmod.set_first_order(copy_, first_order)
        assert all(m.first_order is first_order for m in bnmod.stat_layers(copy_))
        p = {n: t.detach().requires_grad_(True) for n, t in trainable(copy_).items()}
        out[first_order] = subbatch_grads(copy_, p, x, y, None, splits, True)
    for a, b in zip(out[False], out[True]):
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-12, atol=1e-14)


def test_fast_layout_is_channels_last_for_cpu_image_batches_only():
    from initscore.scores import fast_layout

    x = torch.randn(3, 4, 5, 6)
    cl = fast_layout(x)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, x)
    for other in (torch.randn(3, 4), torch.randn(3, 4, 5), cl):
        assert fast_layout(other) is other
    # batch-mode gradcosine runs on it; test_batch_mode_matches_hand_subbatches checks it against plain
    # (default-layout) per-sub-batch loops in float64


def test_row_squared_norms_accumulate_in_float64_in_chunks():
    from initscore import scores

    g = torch.Generator().manual_seed(0)
    f = torch.randn(64, 50_000, generator=g) * torch.logspace(-3, 3, 64)[:, None]
    ref = (f.double() ** 2).sum(1)
    got = scores._row_sq_norms64(f)
    assert got.dtype == torch.float64 and f.numel() > scores._NORM_CHUNK  # the chunked route
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=0)
    small = f[:2, :100]
    torch.testing.assert_close(scores._row_sq_norms64(small), (small.double() ** 2).sum(1), rtol=1e-13, atol=0)


def test_batch_mode_custom_loss_path():
    net = tiny_mlp().double()
    x = torch.randn(9, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (9,))
    ce_sum_scaled = lambda o, t: F.cross_entropy(o, t) * 3.0  # noqa: E731  (custom: not the default CE)
    grads = [flat_grad(net, ce_sum_scaled(net(x[s:e]), y[s:e])) for s, e in batch_splits(9, 2, 0.6)]
    out = gradcosine(net, (x, y), mode="batch", sub_batches=2, overlap=0.6, loss=ce_sum_scaled)
    _assert_close(out, naive_scores(grads), rtol=1e-9)


# ------------------------------------------------------------ no mutation
def test_never_mutates_the_model():
    net = tiny_conv(bn=True)
    net.train()
    net[0].weight.requires_grad_(True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(6, 3, 6, 6), torch.randint(0, 5, (6,))
    for mode in ("sample", "batch"):
        for bn in ("batch", "calibrated", "per_sample"):
            gradcosine(net, (x, y), mode=mode, bn=bn)
    assert net.training is True
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert int(net[1].num_batches_tracked) == 0
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    gradcosine(net, (x, y))
    assert net.training is False


def test_frozen_parameters_are_excluded():
    net = tiny_mlp().double()
    net[0].weight.requires_grad_(False)
    s = gradcosine(net, (torch.randn(4, 6, dtype=torch.float64), torch.randint(0, 4, (4,))))
    assert "0.weight" not in [l.name for l in s.layers]
    assert net[0].weight.requires_grad is False


# ------------------------------------------------------------ errors
def test_non_finite_gradient_names_first_offending_tensor():
    # 0.* dead (ReLU of a negative pre-activation: zero, finite gradients); 2.weight holds a NaN
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.fill_(-1.0)
        net[0].bias.fill_(-1.0)
        net[2].weight[0, 0] = float("nan")
    x, y = torch.rand(4, 3), torch.randint(0, 2, (4,))
    # naive: which tensors get a non-finite gradient?
    g = flat_grad(net, F.cross_entropy(net(x), y))
    bad = [n for n, v in g.items() if not torch.isfinite(v).all()]
    assert bad[0] == "2.weight" and torch.isfinite(g["0.weight"]).all()
    for mode in ("sample", "batch"):
        with pytest.raises(NonFiniteError, match="2.weight") as ei:
            gradcosine(net, (x, y), mode=mode)
        assert ei.value.tensor == "2.weight"


def test_non_finite_inputs():
    net = tiny_mlp()
    x = torch.randn(3, 6)
    x[1, 2] = float("inf")
    with pytest.raises(NonFiniteError):
        gradcosine(net, (x, torch.zeros(3, dtype=torch.long)))


@pytest.mark.parametrize("kwargs", [
    {"mode": "exact"}, {"bn": "running"}, {"sub_batches": 1}, {"mode": "batch", "sub_batches": 9},
    {"overlap": 1.0}, {"overlap": -0.1}, {"chunk_size": 0}, {"chunk_size": True}, {"loss": 3},
])
def test_bad_options(kwargs):
    net = tiny_mlp()
    with pytest.raises(OptionsError):
        gradcosine(net, (torch.randn(4, 6), torch.randint(0, 4, (4,))), **kwargs)


def test_bad_batches():
    net = tiny_mlp()
    with pytest.raises(OptionsError):
        gradcosine(net, torch.randn(4, 6))
    with pytest.raises(OptionsError):
        gradcosine(net, (torch.randn(4, 6), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(OptionsError):
        batch_splits(3, 2, 1.5)
    with pytest.raises(OptionsError):
        gradcosine(nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 2)),
                   (torch.randn(4, 6), torch.zeros(4, dtype=torch.long)), bn="per_sample")


def test_to_dict_is_plain():
    import json

    s = gradcosine(tiny_mlp(), (torch.randn(4, 6), torch.randint(0, 4, (4,))))
    d = json.loads(json.dumps(s.to_dict()))
    assert set(d) == {"gc", "gn", "g_max", "g_min", "n", "mode", "bn", "layers"}
    assert all(math.isfinite(d[k]) for k in ("gc", "gn", "g_max", "g_min"))
    from initscore.contract import LayerScore as ContractLayer

    for layer in d["layers"]:
        ContractLayer(**layer)
