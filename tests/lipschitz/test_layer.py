"""The LDLT L-Lipschitz layer: formula, Lipschitz bound (Jacobian power iteration), variance."""
from __future__ import annotations

import math

import pytest
import torch

import initscore.models as models
from initscore.lipschitz import LDLTLipschitzLinear, MaxMin, jacobian_spectral_norm, layer_variance_mc
from initscore.wishart import variance_mc


def _formula_m(layer: LDLTLipschitzLinear) -> torch.Tensor:
    """gamma W0 (alpha I + W0^T W0)^{-1/2} by eigendecomposition, float64."""
    w = layer.weight.detach().double()
    evals, evecs = torch.linalg.eigh(w.T @ w + layer.alpha * torch.eye(w.shape[1], dtype=torch.float64))
    return layer.lipschitz * w @ (evecs @ torch.diag(evals.rsqrt()) @ evecs.T)


@pytest.mark.parametrize("m,n", [(7, 4), (4, 7), (5, 5)])
def test_effective_weight_matches_formula(m, n):
    torch.manual_seed(0)
    layer = LDLTLipschitzLinear(n, m, lipschitz=1.7, alpha=0.5, init_scale=3.0).double()
    mm = layer.effective_weight().detach()
    ref = _formula_m(layer)
    # same singular values always, and the same output covariance M M^T (trace always; exactly when n <= m)
    assert torch.allclose(torch.linalg.svdvals(mm), torch.linalg.svdvals(ref), atol=1e-10)
    assert torch.trace(mm @ mm.T).item() == pytest.approx(torch.trace(ref @ ref.T).item(), rel=1e-10)
    if n <= m:
        assert torch.allclose(mm @ mm.T, ref @ ref.T, atol=1e-10)


def test_power_iteration_finds_the_exact_spectral_norm():
    torch.manual_seed(1)
    layer = LDLTLipschitzLinear(6, 9, lipschitz=2.0, alpha=1.0, init_scale=1.0).double()
    exact = torch.linalg.svdvals(layer.effective_weight().detach())[0].item()
    w = layer.weight.detach()
    smax = torch.linalg.eigvalsh(w @ w.T)[-1].item()
    assert exact == pytest.approx(2.0 * math.sqrt(smax / (1.0 + smax)), rel=1e-10)
    est = jacobian_spectral_norm(layer, torch.randn(6, dtype=torch.float64), iters=200)
    assert est == pytest.approx(exact, rel=1e-6)


def _net_lipschitz_max(net, d, points, seed):
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(points):
        x = torch.randn(1, d, generator=g, dtype=torch.float64) * 3
        worst = max(worst, jacobian_spectral_norm(net, x, iters=40, seed=seed))
    return worst


@pytest.mark.parametrize("init_scale,alpha,lip,activation", [
    (1.0, 1.0, 1.0, "relu"), (10.0, 1.0, 2.5, "maxmin"), (0.1, 0.01, 0.5, "relu"), (30.0, 1e-3, 1.0, "maxmin")])
def test_network_lipschitz_bound_random_and_after_training(activation, init_scale, alpha, lip):
    torch.manual_seed(3)
    d = 12
    net = models.create("lipschitz_mlp", in_features=d, width=10, depth=3, num_classes=5, alpha=alpha,
                        init_scale=init_scale, lipschitz=lip, activation=activation).double()
    with torch.no_grad():  # random (non-zero) biases too
        for mod in net.modules():
            if isinstance(mod, LDLTLipschitzLinear):
                mod.bias.normal_()
    assert _net_lipschitz_max(net, d, points=10, seed=0) <= lip * (1 + 1e-4)
    # a few aggressive gradient steps that try to increase the output norm
    opt = torch.optim.SGD(net.parameters(), lr=5.0)
    for step in range(10):
        x = torch.randn(32, d, dtype=torch.float64)
        loss = -(net(x) - net(x + 0.01 * torch.randn_like(x))).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert _net_lipschitz_max(net, d, points=10, seed=1) <= lip * (1 + 1e-4)
    for mod in net.modules():  # each layer: exact largest singular value below its share of the bound
        if isinstance(mod, LDLTLipschitzLinear):
            s = torch.linalg.svdvals(mod.effective_weight().detach())[0].item()
            assert s <= mod.lipschitz * (1 + 1e-12)


def test_maxmin_is_norm_preserving_and_1_lipschitz():
    x = torch.randn(50, 7, dtype=torch.float64)
    y = torch.randn(50, 7, dtype=torch.float64)
    act = MaxMin()
    assert torch.allclose(act(x).norm(dim=1), x.norm(dim=1))
    assert ((act(x) - act(y)).norm(dim=1) <= (x - y).norm(dim=1) + 1e-12).all()


def test_param_count_matches_torch():
    entry = models.get_entry("lipschitz_mlp")
    for args in ({}, {"in_features": 64, "width": 33, "depth": 1}, {"depth": 5, "bias": False, "width": 7}):
        net = models.create("lipschitz_mlp", **args)
        assert entry.num_params(args) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("dist", ["gaussian", "uniform"])
def test_layer_monte_carlo_agrees_with_eigenvalue_formula(dist):
    m, n = 12, 16
    for c in (1.0, 10.0):
        layer_mc, layer_se = layer_variance_mc(m, n, c, layers=150, batch=128, seed=4, input_dist=dist)
        eig_mc, eig_se = variance_mc(m, n, c**2 / n, samples=2000, seed=4)
        assert abs(layer_mc - eig_mc) < 4 * math.hypot(layer_se, eig_se), (c, layer_mc, eig_mc)


def test_learnable_alpha_is_positive_trainable_and_keeps_the_bound():
    torch.manual_seed(0)
    layer = LDLTLipschitzLinear(6, 5, lipschitz=1.5, alpha=1.0, learnable_alpha=True).double()
    assert float(layer.alpha) == 1.0 and "log_alpha" in dict(layer.named_parameters())
    fixed = LDLTLipschitzLinear(6, 5, alpha=1.0)
    assert "log_alpha" not in dict(fixed.named_parameters()) and "log_alpha" not in fixed.state_dict()
    x = torch.randn(32, 6, dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.02)
    for _ in range(20):  # push alpha down hard: it stays positive (exp parametrization), the bound holds
        opt.zero_grad()
        (-layer(x).square().mean() + 10 * layer.log_alpha).backward()
        opt.step()
    assert 0 < float(layer.alpha) < 1.0
    sv = torch.linalg.matrix_norm(layer.effective_weight().detach(), ord=2)
    assert float(sv) < 1.5
    # its gradient agrees with finite differences (float64)
    la = layer.log_alpha
    f = lambda: float(layer(x).square().sum())  # noqa: E731
    g = torch.autograd.grad(layer(x).square().sum(), la)[0]
    h = 1e-6
    with torch.no_grad():
        la += h
        up = f()
        la -= 2 * h
        down = f()
        la += h
    assert float(g) == pytest.approx((up - down) / (2 * h), rel=1e-6)


def test_pytorch_default_init_variance():
    torch.manual_seed(0)
    layer = LDLTLipschitzLinear(400, 300, init="pytorch")
    w, b = layer.weight.detach(), layer.bias.detach()
    assert float(w.abs().max()) <= 1 / 20 and float(w.var()) == pytest.approx(1 / (3 * 400), rel=0.02)
    assert float(b.abs().max()) <= 1 / 20 and float(b.abs().max()) > 0
    scaled = LDLTLipschitzLinear(400, 300, init="pytorch", init_scale=10.0)
    assert float(scaled.weight.detach().var()) == pytest.approx(100 / (3 * 400), rel=0.02)
    with pytest.raises(Exception, match="init"):
        LDLTLipschitzLinear(4, 4, init="xavier")
