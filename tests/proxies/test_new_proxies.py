"""The proxies added with the registry (ZiCo, MeCo, SWAP, AZ-NAS, NASLib's epe_nas/plain/l2_norm), each against a
hand-computed value and a naive float64 restatement on tiny models; the registry; the set-level aggregation."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initscore import models, proxies
from initscore.errors import NonFiniteError, OptionsError
from initscore.proxies import registry

CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def tiny_cnn(seed: int = 0, bn: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)]
    return nn.Sequential(*layers)


def tiny_batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def weights_of(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# ---------------------------------------------------------------- registry

def test_registry_entries_are_complete_and_the_package_lists_them() -> None:
    assert set(proxies.PROXIES) == set(registry.REGISTRY)
    for name, info in registry.REGISTRY.items():
        assert info.description and info.source and info.needs, name
        assert all(a in registry.ARTIFACTS for a in info.needs), name
        assert info.builder in registry.BUILDERS, name
        if info.builder != "combined":
            assert callable(registry.builder_fn(info.builder)), name
    for new in ("zico", "meco", "meco_opt", "swap", "swap_reg", "az_expressivity", "az_progressivity", "az_trainability",
                "epe_nas", "plain", "l2_norm"):
        assert new in proxies.PROXIES


def test_register_rejects_unknown_artifacts_builders_and_duplicates() -> None:
    with pytest.raises(ValueError, match="unknown artifacts"):
        registry.register("x_new", "d", "s", ("telepathy",), "zico")
    with pytest.raises(ValueError, match="unknown builder"):
        registry.register("x_new", "d", "s", ("weights",), "nowhere")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("zico", "d", "s", ("weights",), "zico")
    assert "x_new" not in registry.REGISTRY


def test_plan_runs_each_pass_once_for_the_union_of_the_requested_proxies() -> None:
    from initscore.proxies.engine import _plan

    plan = _plan(["snip", "zico", "epe_nas", "meco", "jacob_cov", "meco_opt", "az_trainability", "az_expressivity"])
    groups = [g for g, _ in plan]
    assert groups == [("snip", "epe_nas", "jacob_cov"), ("zico",), ("meco", "meco_opt"), ("az_trainability", "az_expressivity")]


def test_only_the_requested_passes_run() -> None:
    net, batch = tiny_cnn(), tiny_batch()
    timings: dict[str, float] = {}
    values, errors = proxies.compute_many(["l2_norm", "plain"], net, batch, timings=timings)
    assert set(values) == {"l2_norm", "plain"} and not errors
    assert set(timings) == {"l2_norm", "plain"}  # the gradient pass for plain alone; no zico/meco/swap/az pass


# ---------------------------------------------------------------- NASLib: plain, l2_norm, epe_nas

def test_plain_and_l2_norm_match_float64_restatements() -> None:
    net, (x, y) = tiny_cnn(), tiny_batch()
    ref = copy.deepcopy(net).double().train()
    ws = weights_of(ref)
    gs = torch.autograd.grad(F.cross_entropy(ref(x.double()), y), ws)
    plain = sum(float((w * g).sum().detach()) for w, g in zip(ws, gs))
    l2 = sum(float(torch.sqrt((w ** 2).sum()).detach()) for w in ws)
    assert proxies.compute("plain", net, (x, y)) == pytest.approx(plain, rel=1e-4)
    assert proxies.compute("l2_norm", net, (x, y)) == pytest.approx(l2, rel=1e-6)


def test_l2_norm_hand_computed() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # ||.|| = 5
        net[1].weight.copy_(torch.tensor([[1.0, 1.0]]))  # sqrt 2
    assert proxies.compute("l2_norm", net, (torch.randn(2, 2), torch.zeros(2, dtype=torch.long))) == pytest.approx(5 + math.sqrt(2))


def test_epe_nas_hand_computed() -> None:
    from initscore.proxies.epe_nas import epe_nas_score

    k = 1e-5
    # class 0: two rows with correlation exactly -1 ; class 1: one sample (corrcoef = 1)
    jac = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [5.0, 1.0, 0.0]])
    labels = np.array([0, 0, 1])
    s0 = 4 * math.log(1 + k)  # |corr| = 1 everywhere in the 2x2 matrix
    s1 = math.log(1 + k)
    assert epe_nas_score(jac, labels, 10) == pytest.approx(abs(s0) + abs(s1), rel=1e-12)
    # more than 100 classes: each s_c / n_c, then the sum of pairwise |differences| over the classes seen
    a, b = s0 / 2, s1 / 1
    assert epe_nas_score(jac, labels, 120) == pytest.approx(2 * abs(a - b) / 2, rel=1e-9)
    with pytest.raises(NonFiniteError, match="epe_nas"):
        epe_nas_score(np.array([[1.0, 1.0], [1.0, 2.0]]), np.array([0, 0]), 10)


def test_epe_nas_matches_naive_jacobian_loop() -> None:
    net, (x, y) = tiny_cnn(bn=False), tiny_batch(9)
    ref = copy.deepcopy(net).double()
    rows = []
    for n in range(len(x)):  # per-sample input gradients of sum(logits), one sample at a time (no BN: same function)
        xn = x[n:n + 1].double().requires_grad_(True)
        (g,) = torch.autograd.grad(ref(xn).sum(), xn)
        rows.append(g.flatten().numpy())
    jac = np.array(rows)
    total = 0.0
    for c in sorted(set(y.tolist())):
        m = jac[y.numpy() == c]
        corr = np.corrcoef(m) if len(m) > 1 else np.array([[1.0]])
        total += abs(np.sum(np.log(np.abs(corr) + 1e-5)))
    assert proxies.compute("epe_nas", net, (x, y)) == pytest.approx(total, rel=1e-4)


# ---------------------------------------------------------------- ZiCo

def test_zico_hand_computed() -> None:
    from initscore.proxies.zico import zico_from_gradients

    # one layer, two splits: std = |a-b|/2, mean|g| = (|a|+|b|)/2; entry 2 has std 0 and is skipped
    g1, g2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])
    assert zico_from_gradients([[g1], [g2]]) == pytest.approx(math.log(2 / 1 + 2 / 1))
    # a layer whose every entry is equal across splits adds nothing
    assert zico_from_gradients([[g1, g1], [g2, g1]]) == pytest.approx(math.log(4))


def test_zico_matches_float64_restatement() -> None:
    net, (x, y) = tiny_cnn(), tiny_batch(8)
    ref = copy.deepcopy(net).double().train()
    ws = weights_of(ref)
    per = [torch.autograd.grad(F.cross_entropy(ref(x[a:b].double()), y[a:b]), ws) for a, b in ((0, 4), (4, 8))]
    total = 0.0
    for l in range(len(ws)):
        G = np.stack([per[0][l].flatten().numpy(), per[1][l].flatten().numpy()])
        std, mean = G.std(0), np.abs(G).mean(0)
        nz = std != 0
        total += math.log(np.sum(mean[nz] / std[nz]))
    assert proxies.compute("zico", net, (x, y)) == pytest.approx(total, rel=1e-3)


# ---------------------------------------------------------------- MeCo

def test_meco_min_eigenvalue_hand_computed() -> None:
    from initscore.proxies.meco import _min_eig_corr

    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([1.0, -1.0, 1.0, -1.0])
    r = float(np.corrcoef(a.numpy(), b.numpy())[0, 1])
    assert _min_eig_corr(torch.stack([a, b])) == pytest.approx(1 - abs(r))  # eigenvalues of [[1,r],[r,1]]: 1 +- r
    assert _min_eig_corr(torch.stack([a, 2 * a])) == pytest.approx(0.0, abs=1e-12)  # perfectly correlated
    assert _min_eig_corr(torch.stack([a, torch.ones(4)])) == pytest.approx(0.0, abs=1e-12)  # constant row: NaN -> 0
    assert _min_eig_corr(torch.ones(3, 1)) == 0.0  # one observation per channel


def test_meco_matches_layer_by_layer_float64_restatement() -> None:
    net, (x, y) = tiny_cnn(), tiny_batch()
    ref = copy.deepcopy(net).double().train()
    h = x[:1].double()
    terms = []
    for layer in ref:  # every layer's output, then the root's (= the last output again)
        h = layer(h)
        terms.append(h[0].detach())
    terms.append(h[0].detach())

    def lam(f):
        f = f.reshape(f.shape[0], -1).numpy()
        if f.shape[1] < 2:
            return 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.nan_to_num(np.corrcoef(f), nan=0.0)
        return float(np.linalg.eigvalsh(c)[0])
    expected = sum(lam(f) for f in terms)
    assert proxies.compute("meco", net, (x, y)) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_meco_opt_scales_eight_channels_and_is_deterministic() -> None:
    torch.manual_seed(0)
    net = models.create("nb201", cell=CONV3, C=16, N=1)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    a = proxies.compute("meco_opt", net, (x, y))
    assert a == proxies.compute("meco_opt", net, (x, y))
    assert math.isfinite(a) and math.isfinite(proxies.compute("meco", net, (x, y)))


# ---------------------------------------------------------------- SWAP

def test_swap_pattern_count_equals_unique_rows() -> None:
    from initscore.proxies.swap import count_patterns

    g = torch.Generator().manual_seed(0)
    for n in (1, 3, 16):
        a = torch.rand(n, 500, generator=g) < 0.3
        assert count_patterns(a) == torch.unique(a.T.to(torch.int8), dim=0).shape[0]
    # hand: 3 samples, 4 neurons with patterns 101, 101, 000, 111 -> 3 distinct
    a = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    assert count_patterns(a) == 3


def test_swap_matches_naive_restatement_and_regularization() -> None:
    from initscore.proxies.swap import MU_K, SIGMA_K2

    net, (x, y) = tiny_cnn(), tiny_batch(20)
    ref = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
    ref.train()
    outs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach().reshape(o.shape[0], -1)))
             for m in ref.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        ref(x[:16])
    for hk in hooks:
        hk.remove()
    a = torch.sign(torch.cat(outs, 1))
    expected = torch.unique(a.T, dim=0).shape[0]
    values = proxies.compute_many(["swap", "swap_reg"], net, (x, y))[0]
    assert values["swap"] == expected
    p = sum(q.numel() for q in net.parameters()) / 1e3
    assert values["swap_reg"] == pytest.approx(expected * math.exp(-((p - MU_K) ** 2) / SIGMA_K2), rel=1e-12)


def test_swap_needs_relus_and_uses_flat_ones_only_without_feature_maps() -> None:
    from initscore.proxies.swap import count_patterns

    net = nn.Sequential(nn.Flatten(), nn.Linear(108, 3))
    values, errors = proxies.compute_many(["swap"], net, tiny_batch())
    assert "swap" in errors and "ReLU" in errors["swap"]
    # an MLP: its ReLU outputs (here one hidden layer of 7) are the patterns
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(108, 7), nn.ReLU(), nn.Linear(7, 3))
    x, y = tiny_batch(20)
    ref = copy.deepcopy(mlp)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.zero_()
        h = torch.relu(ref[1](ref[0](x[:16])))
    assert proxies.compute("swap", mlp, (x, y)) == count_patterns(h > 0)


# ---------------------------------------------------------------- AZ-NAS

def test_az_expressivity_of_isotropic_features_is_log_c_and_matches_numpy() -> None:
    from initscore.proxies.az_nas import expressivity_entropy

    # 4 channels, each +-1 on its own pixel set: covariance = I/... up to a common scale -> entropy log 4
    f = torch.zeros(1, 4, 2, 2)
    for c in range(4):
        f[0, c].view(-1)[c] = 1.0
    # centred covariance of one-hot rows: eigenvalues 0 (the mean direction) and 1/4 (three times)
    assert expressivity_entropy(f) == pytest.approx(math.log(3), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 5, 4, 4, generator=g)
    rows = f.permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    s = np.linalg.eigvalsh(np.cov(rows.T, bias=True))
    p = s / s.sum()
    assert expressivity_entropy(f) == pytest.approx(float(np.sum(-p * np.log(p + 1e-8))), rel=1e-9)


def test_az_trainability_term_hand_computed() -> None:
    from initscore.proxies.az_nas import trainability_term

    g_out = torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(1, 1, 2, 2)
    # g_in = 2 g_out: M = mean(2 g^2) = 2 -> sigma = 2 -> 2 - 2 - 1/(2 + 1e-6)
    assert trainability_term(2 * g_out, g_out) == pytest.approx(-1 / (2 + 1e-6), rel=1e-12)
    with pytest.raises(NonFiniteError, match="identity"):
        trainability_term(g_out.clone(), g_out)
    # halved resolution: g_in (1, 1, 4, 4) is pixel-unshuffled to (1, 4, 2, 2) before M = g_in^T g_out / (H W)
    g_in = torch.arange(16.0).reshape(1, 1, 4, 4)
    a = F.pixel_unshuffle(g_in, 2).permute(0, 2, 3, 1).reshape(-1, 4).double()
    b = g_out.permute(0, 2, 3, 1).reshape(-1, 1).double()
    s = float(torch.linalg.svdvals(a.T @ b / 4)[0])
    assert trainability_term(g_in, g_out) == pytest.approx(2 - s - 1 / (s + 1e-6), rel=1e-12)


def test_az_nas_on_nb201_progressivity_is_the_min_step_of_block_entropies() -> None:
    from initscore.proxies.az_nas import blocks, expressivity_entropy, kaiming_fanin_

    torch.manual_seed(0)
    net = models.create("nb201", cell=MIXED, C=4, N=1)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    values, errors = proxies.compute_many(["az_expressivity", "az_progressivity", "az_trainability"], net, (x, y))
    assert not errors and all(math.isfinite(v) for v in values.values())
    ref = copy.deepcopy(net).train()
    gen = torch.Generator().manual_seed(0)
    kaiming_fanin_(ref, gen)
    noise = torch.randn(x.shape, generator=gen)  # AZ-NAS feeds N(0, 1) inputs of the batch's shape
    feats = []
    hooks = [b.register_forward_hook(lambda m, i, o: feats.append(o.detach())) for b in blocks(ref)]
    with torch.no_grad():
        ref(noise)
    for hk in hooks:
        hk.remove()
    e = [expressivity_entropy(f) for f in feats]
    assert len(e) == 1 + 5  # stem, 3 cells (N=1) and 2 reduction blocks
    assert values["az_expressivity"] == pytest.approx(sum(e), rel=1e-6)
    assert values["az_progressivity"] == pytest.approx(min(b - a for a, b in zip(e, e[1:])), rel=1e-5, abs=1e-6)
    # the images' values do not matter (only their shape)
    assert proxies.compute("az_expressivity", net, (x * 3 + 1, y)) == values["az_expressivity"]


def test_az_nas_needs_a_cell_network() -> None:
    values, errors = proxies.compute_many(["az_expressivity"], tiny_cnn(), tiny_batch())
    assert "stem" in errors["az_expressivity"]


# ---------------------------------------------------------------- set-level aggregation

def test_log_rank_aggregate_hand_computed() -> None:
    from initscore.proxies.aggregate import log_rank_aggregate

    out = log_rank_aggregate({"a": [1.0, 3.0, 2.0], "b": [10.0, None, 30.0]})
    # ranks a: 1, 3, 2 ; b: 2, 1 (missing = worst), 3  -> sum log(rank/3)
    expected = [math.log(1 / 3) + math.log(2 / 3), math.log(3 / 3) + math.log(1 / 3), math.log(2 / 3) + math.log(3 / 3)]
    assert out == pytest.approx(expected)
    assert log_rank_aggregate({"a": [5.0, 5.0]}) == pytest.approx([math.log(1.5 / 2)] * 2)  # ties share the mean rank
    with pytest.raises(ValueError):
        log_rank_aggregate({"a": [1.0], "b": [1.0, 2.0]})


@pytest.mark.parametrize("names", [["zico"], ["meco", "meco_opt"], ["swap"], ["az_expressivity", "az_trainability"]])
def test_new_passes_leave_the_callers_model_untouched(names: list[str]) -> None:
    torch.manual_seed(0)
    net = models.create("nb201", cell=MIXED, C=4, N=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    values, errors = proxies.compute_many(names, net, (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))))
    assert not errors and set(values) == set(names)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_nan_model_is_an_error_for_the_new_gradient_proxies() -> None:
    class NaNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x) * float("nan")

    x, y = torch.randn(4, 4), torch.zeros(4, dtype=torch.long)
    values, errors = proxies.compute_many(["zico", "epe_nas", "plain"], NaNNet(), (x, y))
    assert not values and set(errors) == {"zico", "epe_nas", "plain"}
    with pytest.raises(OptionsError):
        proxies.compute_many(["zicoo"], NaNNet(), (x, y))
