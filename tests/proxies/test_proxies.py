"""Zero-cost proxies against hand-computed values, manual autograd and finite differences."""
from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initscore import models, proxies
from initscore.errors import NonFiniteError, OptionsError
from initscore.proxies.batch import DISCONNECTED

CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def tiny_cnn(seed: int = 0, act: type[nn.Module] = nn.ReLU, bn: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [act(), nn.Conv2d(4, 4, 3, padding=1, bias=False), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
    return nn.Sequential(*layers)


def tiny_batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def weights_of(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def manual_grads(net: nn.Module, x, y) -> list[torch.Tensor]:
    net = copy.deepcopy(net).double().train()
    ws = weights_of(net)
    return [g for g in torch.autograd.grad(F.cross_entropy(net(x.double()), y), ws)], [w.detach() for w in ws]


def test_package_import_is_torch_free() -> None:
    code = "import sys, initscore.proxies as p; assert 'torch' not in sys.modules; assert 'synflow' in p.PROXIES; print(len(p.PROXIES))"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(proxies.PROXIES) == set(proxies.DESCRIPTIONS)


def test_synflow_two_layer_linear_closed_form() -> None:
    # f(x) = W2 W1 x, no bias, no BN. With |W| and x = 1: R = 1^T |W2| |W1| 1. R is linear in each
    # layer, so sum |W1 * dR/dW1| = sum |W2 * dR/dW2| = R, and synflow = 2 R.
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    W1, W2 = net[0].weight.detach().double().abs(), net[2].weight.detach().double().abs()
    R = float(torch.ones(2, dtype=torch.float64) @ W2 @ W1 @ torch.ones(5, dtype=torch.float64))
    got = proxies.compute("synflow", net, (torch.randn(3, 5), torch.zeros(3, dtype=torch.long)))
    assert got == pytest.approx(2 * R, rel=1e-12)


def test_synflow_removes_batchnorm_and_does_not_overflow_in_float64() -> None:
    # 1.5M-parameter cell; float32 of the |W| network would overflow for deep products, float64 does not
    torch.manual_seed(0)
    net = models.create("nb201", cell=CONV3, C=4, N=2)
    x = torch.randn(2, 3, 32, 32)
    v = proxies.compute("synflow", net, (x, torch.zeros(2, dtype=torch.long)))
    assert math.isfinite(v) and v > 0
    # the same value without BN modules at all: BN must be dropped, not applied
    from initscore.proxies.data_free import _remove_batchnorm

    stripped = copy.deepcopy(net)
    _remove_batchnorm(stripped)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stripped.modules())
    assert proxies.compute("synflow", stripped, (x, torch.zeros(2, dtype=torch.long))) == pytest.approx(v, rel=1e-12)


def test_params_and_flops_hand_counts() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 4))
    x = torch.randn(2, 3, 5, 5)
    y = torch.zeros(2, dtype=torch.long)
    assert proxies.compute("params", net, (x, y)) == (3 * 8 * 9 + 8) + (200 * 4 + 4)
    # conv: 8 x 5 x 5 outputs, each 3 * 3 * 3 MACs; linear: 4 outputs x 200 inputs (per sample)
    assert proxies.compute("flops", net, (x, y)) == 8 * 5 * 5 * 27 + 4 * 200
    grouped = nn.Conv2d(4, 8, 3, stride=2, groups=2)
    assert proxies.compute("flops", grouped, (torch.randn(1, 4, 7, 7), y[:1])) == 8 * 3 * 3 * (2 * 9)


def test_grad_norm_and_snip_match_manual_autograd() -> None:
    net = tiny_cnn()
    x, y = tiny_batch()
    grads, ws = manual_grads(net, x, y)
    values, errors = proxies.compute_many(["grad_norm", "snip"], net, (x, y))
    assert not errors
    assert values["grad_norm"] == pytest.approx(sum(float(g.norm()) for g in grads), rel=1e-5)
    assert values["snip"] == pytest.approx(sum(float((w * g).abs().sum()) for w, g in zip(ws, grads)), rel=1e-5)


def test_grasp_matches_finite_difference_hessian_vector_product() -> None:
    # smooth activations: Hg = (g(W + eps g) - g(W - eps g)) / (2 eps), grasp = -sum W * Hg
    net = tiny_cnn(act=nn.Tanh)
    x, y = tiny_batch()
    grads, ws = manual_grads(net, x, y)
    eps = 1e-4

    def grads_at(sign: float) -> list[torch.Tensor]:
        moved = copy.deepcopy(net).double().train()
        with torch.no_grad():
            for w, g in zip(weights_of(moved), grads):
                w.add_(sign * eps * g)
        return manual_grads(moved, x, y)[0]

    hg = [(a - b) / (2 * eps) for a, b in zip(grads_at(1.0), grads_at(-1.0))]
    expected = sum(float(-(w * h).sum()) for w, h in zip(ws, hg))
    assert proxies.compute("grasp", net, (x, y)) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_fisher_matches_manual_activation_gradients() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    n64 = copy.deepcopy(net).double()
    h = n64[0](x.double())
    h.retain_grad()
    z = n64[2](n64[1](h))
    z.retain_grad()
    F.cross_entropy(z, y).backward()
    # per layer: fan-in * sum_k 0.5 * mean_n (a_nk * dL/da_nk)^2 (zero-cost-nas broadcasts over the channel's weights)
    expected = 5 * float((0.5 * (h.detach() * h.grad).pow(2).mean(0)).sum()) + 4 * float((0.5 * (z.detach() * z.grad).pow(2).mean(0)).sum())
    assert proxies.compute("fisher", net, (x, y)) == pytest.approx(expected, rel=1e-5)


def test_jacob_cov_matches_manual_jacobians() -> None:
    net = tiny_cnn(bn=False)
    x, y = tiny_batch()
    J = np.stack([torch.autograd.functional.jacobian(lambda t: net(t[None]).sum(), x[i]).flatten().numpy() for i in range(len(x))])
    eig = np.linalg.eigvalsh(np.corrcoef(J.astype(np.float64)))
    expected = -np.sum(np.log(eig + 1e-5) + 1 / (eig + 1e-5))
    assert proxies.compute("jacob_cov", net, (x, y)) == pytest.approx(expected, rel=1e-4)


def test_naswot_matches_manual_logdet() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(5, 4), torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        c1 = (net[0](x) > 0).double()
        c2 = (net[2](net[1](net[0](x))) > 0).double()
    K = sum(c @ c.T + (1 - c) @ (1 - c).T for c in (c1, c2))
    assert proxies.compute("naswot", net, (x, y)) == pytest.approx(float(np.linalg.slogdet(K.numpy())[1]), rel=1e-12)


def test_naswot_singular_kernel_is_an_error() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(1, 4).repeat(3, 1)  # identical samples -> identical codes -> det K = 0
    with pytest.raises(NonFiniteError, match="singular"):
        proxies.compute("naswot", net, (x, torch.zeros(3, dtype=torch.long)))


def test_gradsign_matches_per_sample_loop() -> None:
    net = tiny_cnn()
    x, y = tiny_batch()
    ref = copy.deepcopy(net).train()
    signs = None
    for i in range(len(x)):
        g = torch.autograd.grad(F.cross_entropy(ref(x[i : i + 1]), y[i : i + 1]), weights_of(ref))
        s = torch.cat([t.flatten() for t in g]).sign()
        signs = s if signs is None else signs + s
    assert proxies.compute("gradsign", net, (x, y)) == pytest.approx(float(signs.abs().sum()))


def test_zen_deterministic_and_finite() -> None:
    net = tiny_cnn()
    x, y = tiny_batch()
    a = proxies.compute("zen", net, (x, y))
    assert math.isfinite(a) and a == proxies.compute("zen", net, (x, y))


@pytest.mark.parametrize("variant", ["official", "zero_cost_nas"])
def test_every_proxy_alone_equals_its_value_inside_compute_many(variant: str) -> None:
    # the shared passes (one forward for naswot/fisher/grad_norm/snip/grasp/jacob_cov, one per-sample pass for
    # gradsign/gradcosine/gradnorm) must not change any value; nor may they touch the caller's model
    torch.manual_seed(0)
    net = models.create("nb201", cell="|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
                        C=4, N=1, variant=variant)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    names = list(proxies.PROXIES)
    together, errors = proxies.compute_many(names, net, (x, y))
    assert not errors, errors
    assert set(together) == set(names)
    for p in names:
        assert proxies.compute(p, net, (x, y)) == pytest.approx(together[p], rel=1e-6, abs=1e-9), p
    # and inside other subsets (each group with and without its heavier members)
    for subset in (["naswot", "fisher"], ["jacob_cov", "naswot"], ["grasp", "snip"], ["gradsign", "gradnorm"], ["gradcosine", "zen"]):
        part, errs = proxies.compute_many(subset, net, (x, y))
        assert not errs
        for p in subset:
            assert part[p] == pytest.approx(together[p], rel=1e-6, abs=1e-9), (subset, p)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in net.parameters())


def test_gradcosine_and_gradnorm_come_from_the_engine_with_per_sample_bn() -> None:
    from initscore.scores import gradcosine

    net = tiny_cnn()
    x, y = tiny_batch()
    s = gradcosine(net, (x, y), bn="per_sample")
    values, errors = proxies.compute_many(["gradcosine", "gradnorm", "gradsign"], net, (x, y))
    assert not errors
    assert values["gradcosine"] == pytest.approx(s.gc, rel=1e-9)
    assert values["gradnorm"] == pytest.approx(s.gn, rel=1e-9)


def test_naswot_on_nb201_matches_float64_reference_with_shared_relu_inputs() -> None:
    # in an NB201 cell several ReLUs read the same node tensor; each ReLU still counts once in K
    torch.manual_seed(4)
    net = models.create("nb201", cell=CONV3, C=2, N=1)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    ref = copy.deepcopy(net).train()
    codes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: codes.append((inp[0] > 0).flatten(1).double()))
             for m in ref.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        ref(x)
    for h in hooks:
        h.remove()
    assert len(codes) == sum(isinstance(m, nn.ReLU) for m in ref.modules())
    K = sum(c @ c.T + (1 - c) @ (1 - c).T for c in codes)
    expected = float(np.linalg.slogdet(K.numpy())[1])
    assert proxies.compute("naswot", net, (x, y)) == pytest.approx(expected, rel=1e-12)
    together, _ = proxies.compute_many(["naswot", "grasp", "fisher"], net, (x, y))
    assert together["naswot"] == pytest.approx(expected, rel=1e-12)


def test_synflow_zero_cost_nas_variant_keeps_reduction_bn_in_training_mode() -> None:
    # zero-cost-nas get_prunable_copy(bn=False) drops stem/cell/top BNs but its reduction blocks keep theirs
    # (train mode, statistics of the single all-ones input); conv biases of the cells are |.|'d like weights
    torch.manual_seed(5)
    net = models.create("nb201", cell=CONV3, C=2, N=1, variant="zero_cost_nas")
    ref = copy.deepcopy(net).double()
    for parent in list(ref.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and not getattr(child, "keep_in_synflow", False):
                setattr(parent, name, nn.Identity())
    ref.train()
    with torch.no_grad():
        for p in ref.parameters():
            p.abs_()
    ref(torch.ones(1, 3, 32, 32, dtype=torch.float64)).sum().backward()
    expected = sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in ref.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None)
    got = proxies.compute("synflow", net, (torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)))
    assert got == pytest.approx(expected, rel=1e-10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ref.modules()) == 4


def test_sign_convention_degenerate_cell_scores_below_conv_cell() -> None:
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    vals = {}
    for cell in (NONE, CONV3):
        torch.manual_seed(0)
        net = models.create("nb201", cell=cell, C=4, N=1)
        vals[cell], errors = proxies.compute_many(["synflow", "params", "flops"], net, (x, y))
        assert not errors
    for p in ("synflow", "params", "flops"):
        assert vals[NONE][p] < vals[CONV3][p], p


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.fc(self.relu(x)) * float("nan")


@pytest.mark.parametrize("name", ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "naswot", "synflow", "gradsign", "zen"])
def test_nan_model_is_an_error_not_a_number(name: str) -> None:
    x, y = torch.randn(4, 4), torch.zeros(4, dtype=torch.long)
    values, errors = proxies.compute_many([name], NaNNet(), (x, y))
    assert name not in values and name in errors
    with pytest.raises(NonFiniteError):
        proxies.compute(name, NaNNet(), (x, y))


def test_unknown_proxy_and_bad_batch() -> None:
    with pytest.raises(OptionsError, match="unknown proxy"):
        proxies.compute_many(["synflowz"], tiny_cnn(), tiny_batch())
    with pytest.raises(OptionsError, match="same non-zero batch size"):
        proxies.compute("snip", tiny_cnn(), (torch.randn(3, 3, 6, 6), torch.zeros(2, dtype=torch.long)))


def test_chunked_gradient_pass_without_bn_keeps_sample_wise_proxies() -> None:
    # the out-of-memory fallback splits the batch; without BN per-sample quantities cannot change
    from initscore.proxies.gradient_pass import shared_gradient_proxies

    net = tiny_cnn(bn=False)
    x, y = tiny_batch(8)
    one, e1 = shared_gradient_proxies(net, x, y, ["naswot", "jacob_cov", "grad_norm", "grasp"], chunks=1)
    two, e2 = shared_gradient_proxies(net, x, y, ["naswot", "jacob_cov", "grad_norm", "grasp"], chunks=2)
    assert not e1 and not e2
    assert two["naswot"] == pytest.approx(one["naswot"], rel=1e-9)
    assert two["jacob_cov"] == pytest.approx(one["jacob_cov"], rel=1e-5)
    # sum of two half-batch mean losses = 2 x the full mean loss, so gradients double (reference split_data)
    assert two["grad_norm"] == pytest.approx(2 * one["grad_norm"], rel=1e-5)
    assert two["grasp"] == pytest.approx(4 * one["grasp"], rel=1e-4)


def test_score_architectures_isolates_failures_and_reports_progress() -> None:
    specs = [
        {"arch": "nb201", "args": {"cell": NONE, "C": 2, "N": 1}},
        {"arch": "nb201", "args": {"cell": "|bogus~0|"}},
        {"arch": "nb201", "args": {"cell": CONV3, "C": 2, "N": 1}},
    ]
    seen = []
    rows = proxies.score_architectures(specs, (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))), ["synflow", "params", "jacob_cov"],
                                       progress=lambda i, n, r: seen.append((i, n, r.ok)))
    # the all-none cell is disconnected: not scored, its row says why (ranked worst by callers)
    assert seen == [(0, 3, False), (1, 3, False), (2, 3, True)]
    assert rows[0].error == DISCONNECTED and rows[0].values == {}
    assert "3 nodes" in rows[1].error
    assert rows[2].values["params"] == models.get_entry("nb201").num_params(specs[2]["args"])
    assert set(rows[2].values) == {"synflow", "params", "jacob_cov"}


def test_ensemble_is_the_sum_of_log_phi_of_its_calibrated_inputs() -> None:
    from initscore.proxies.ensemble import CALIBRATION, INPUTS, LOG_INPUTS

    torch.manual_seed(0)
    net = models.create("nb201", cell="|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", C=4, N=1)
    batch = (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    values, errors = proxies.compute_many(["ensemble", *INPUTS], net, batch)
    assert not errors
    z = [((math.log10(values[p]) if p in LOG_INPUTS else values[p]) - CALIBRATION[p][0]) / CALIBRATION[p][1] for p in INPUTS]
    special = pytest.importorskip("scipy.special")
    assert values["ensemble"] == pytest.approx(sum(float(special.log_ndtr(v)) for v in z), rel=1e-9)


def test_log_phi_left_tail_and_symmetry() -> None:
    from statistics import NormalDist

    from initscore.proxies.ensemble import log_phi

    for z in (-3.0, 0.0, 2.5):  # NormalDist's 1 + erf cancels further left
        assert log_phi(z) == pytest.approx(math.log(NormalDist().cdf(z)), rel=1e-9)
    special = pytest.importorskip("scipy.special")
    for z in (-8.0, -29.0, -35.0, -100.0):
        assert log_phi(z) == pytest.approx(float(special.log_ndtr(z)), rel=1e-6)
    # beyond -30 the asymptotic series continues smoothly (erfc underflows near -38)
    assert log_phi(-30.0 - 1e-9) == pytest.approx(log_phi(-29.999999999), rel=1e-6)
    assert math.isfinite(log_phi(-1e3)) and log_phi(-1e3) < log_phi(-40.0)


def _cyclic_garbage(fn) -> list:
    """Objects that `fn()` leaves in reference cycles (found by the cyclic collector, kept for inspection)."""
    import gc

    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        fn()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


@pytest.mark.parametrize("names", [["synflow"], ["flops"], ["zen"], ["identity_gain"], ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "naswot"]])
def test_proxy_copies_are_freed_by_reference_counting(names: list[str]) -> None:
    """compute_many no longer runs a full gc.collect() (~80 ms) per call: its copies must not sit in cycles.
    (A recursive closure in bn.tree_copy made every copy, with its tensors, cyclic garbage.)"""
    from initscore import bn as bnmod

    net = models.build({"arch": "nb201", "args": {"cell": CONV3, "C": 4, "N": 1}})
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    assert _cyclic_garbage(lambda: bnmod.tree_copy(net)) == []
    left = _cyclic_garbage(lambda: proxies.compute_many(names, net, (x, y)))
    assert [o for o in left if isinstance(o, (nn.Module, torch.Tensor))] == []


def test_score_architectures_leaves_no_model_alive() -> None:
    import gc

    from initscore.models.nb201_net import NB201Network

    pool = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
    specs = [{"arch": "nb201", "args": {"cell": c, "C": 2, "N": 1}} for c in (CONV3, pool, CONV3)]
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    gc.collect()
    before = sum(isinstance(o, NB201Network) for o in gc.get_objects())
    rows = proxies.score_architectures(specs, batch, ["synflow", "grad_norm", "gradsign", "params"])
    assert all(r.ok for r in rows)
    assert sum(isinstance(o, NB201Network) for o in gc.get_objects()) == before  # without a further collection
