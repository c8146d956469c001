"""Signal-propagation report: analytic checks on tiny nets, no mutation, CKA, plot, contract."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initscore.models as models
from initscore.contract import PropagationResult
from initscore.errors import DataError, NonFiniteError
from initscore.propagation import linear_cka, plot, plot_bytes, report


def test_linear_layer_forward_variance_matches_analytic():
    torch.manual_seed(0)
    d, k, B = 20, 7, 20000
    lin = nn.Linear(d, k)
    x = torch.randn(B, d)
    rep = report(lin, x)
    (layer,) = rep.layers
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    # entries of h = W x + b, x ~ N(0, I): E h_i = b_i, Var h_i = ||W_i||^2; population variance over all entries
    expected = (w.pow(2).sum() / k + b.var(unbiased=False)).item()
    assert layer.forward_var == pytest.approx(expected, rel=0.03)
    # loss = 0.5 sum(h^2) without targets: dL/dh = h exactly, so the backward variance equals the forward one
    assert rep.loss_kind == "half_sum_sq"
    assert layer.backward_var == pytest.approx(layer.forward_var, rel=1e-12)


def test_two_layer_backward_variance_is_the_chain_rule():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(64, 5, dtype=torch.float64)
    net = net.double()
    rep = report(net, x)
    assert [l.name for l in rep.layers] == ["0", "2"]
    h1 = net[0](x)
    out = net[2](torch.tanh(h1))
    g1 = (out @ net[2].weight) * (1 - torch.tanh(h1) ** 2)  # dL/dh1 for L = 0.5 |out|^2
    assert rep.layers[0].backward_var == pytest.approx(g1.detach().var(unbiased=False).item(), rel=1e-10)
    assert rep.layers[0].forward_var == pytest.approx(h1.detach().var(unbiased=False).item(), rel=1e-10)
    assert rep.layers[1].depth == 1


def test_cross_entropy_backward_with_targets():
    torch.manual_seed(2)
    lin = nn.Linear(6, 4).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    rep = report(lin, (x, y))
    logits = lin(x)
    g = torch.softmax(logits, 1) - nn.functional.one_hot(y, 4)  # d sum CE / d logits
    assert rep.loss_kind == "cross_entropy_sum"
    assert rep.layers[0].backward_var == pytest.approx(g.detach().var(unbiased=False).item(), rel=1e-10)


def test_report_never_mutates_the_model_and_handles_bn():
    torch.manual_seed(3)
    net = models.create("resnet20", bn=True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    rep = report(net, (x, y))
    after = net.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # incl. BN running stats
    assert all(p.grad is None for p in net.parameters())
    assert not net._forward_hooks and all(not m._forward_hooks for m in net.modules())
    names = [l.name for l in rep.layers]
    assert names[0] == "conv1" and names[-1] == "fc" and len(names) == len(set(names))
    bn_vars = [l.forward_var for l in rep.layers if l.kind == "BatchNorm2d"]
    assert all(v == pytest.approx(1.0, abs=1e-3) for v in bn_vars)  # train-mode BN output has unit variance
    blocks = report(net, (x, y), level="block")
    assert [l.kind for l in blocks.layers].count("BasicBlock") == 9


def test_lipschitz_mlp_report_and_contract_round_trip(tmp_path):
    net = models.create("lipschitz_mlp", in_features=16, width=8, depth=4, num_classes=3)
    x = torch.randn(32, 16)
    y = torch.randint(0, 3, (32,))
    rep = report(net, (x, y))
    assert [l.kind for l in rep.layers] == ["LDLTLipschitzLinear"] * 4
    res = rep.to_result("lipschitz_mlp", plot_sha256=plot(rep, str(tmp_path / "p.png")))
    again = PropagationResult.model_validate_json(res.model_dump_json())
    assert again == res and len(res.layers) == 4
    png = (tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == plot_bytes(rep)


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 10, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-12)  # invariant to rotation, scale, shift
    y = torch.randn(50, 4, generator=g, dtype=torch.float64)
    # feature-space formula ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(x, y) == pytest.approx(ref.item(), rel=1e-12)
    assert linear_cka(x[:1], y[:1]) is None
    # both code paths (sample-space Grams for wide inputs, feature space for tall ones) agree
    wide = torch.randn(6, 40, generator=g, dtype=torch.float64)
    wy = torch.randn(6, 30, generator=g, dtype=torch.float64)
    wc, wyc = wide - wide.mean(0), wy - wy.mean(0)
    ref = (wyc.T @ wc).norm() ** 2 / ((wc.T @ wc).norm() * (wyc.T @ wyc).norm())
    assert linear_cka(wide, wy) == pytest.approx(ref.item(), rel=1e-10)


def test_bad_inputs_raise_one_line_errors():
    lin = nn.Linear(3, 2)
    with pytest.raises(DataError):
        report(lin, torch.full((4, 3), float("nan")))
    with pytest.raises(DataError):
        report(lin, (torch.randn(4, 3), torch.zeros(5, dtype=torch.long)))
    big = nn.Linear(3, 2)
    with torch.no_grad():
        big.weight.fill_(1e38)
    with pytest.raises(NonFiniteError):
        report(big, torch.randn(4, 3) * 1e10)


def test_plot_compare_writes_png(tmp_path):
    from initscore.propagation import plot_compare

    torch.manual_seed(4)
    x = torch.randn(8, 5)
    reps = {"a": report(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)), x),
            "b": report(nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 2)), x)}
    path = tmp_path / "c.png"
    import hashlib

    assert plot_compare(reps, str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
