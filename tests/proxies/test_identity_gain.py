"""identity_gain: min over the network's shape-preserving units of tr(J)/n (one Rademacher probe, central
differences), against hand computations and a float64 autograd restatement with the same probe."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from initscore import models, proxies
from initscore.proxies import identity_gain as ig

CONV_EDGE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP_EDGE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
POOL_EDGE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


class Res(nn.Module):
    """y = x + W relu(x) (or x + W x): a unit (it has a child and is not a container)."""

    def __init__(self, w: torch.Tensor, relu: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        self.relu = relu
        with torch.no_grad():
            self.lin.weight.copy_(w)

    def forward(self, x):
        return x + self.lin(torch.relu(x) if self.relu else x)


class Down(nn.Module):
    """A unit that changes the shape (4 -> 2): never counted."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x)


class Outer(nn.Module):
    """A unit holding a unit: only the outer one counts (y = -inner(x))."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.inner = Res(w)

    def forward(self, x):
        return -self.inner(x)


def batch(n: int = 4, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.zeros(n, dtype=torch.long)


def probes(shapes: list[torch.Size]) -> list[torch.Tensor]:
    """The proxy's probes: one Rademacher tensor per counted unit, in forward order, from a generator seeded 0."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 2, s, generator=g).to(torch.float32) * 2 - 1).double() for s in shapes]


def test_hand_computed_identity_plus_antisymmetric_map() -> None:
    # W antisymmetric: v^T (I + W) v = v^T v for every v, so the one-probe estimate is exactly tr(I + W)/n = 1
    w = torch.tensor([[0.0, -1, 0, 2], [1, 0, 0, 0], [0, 0, 0, -3], [-2, 0, 3, 0]])
    x, y = batch()
    assert proxies.compute("identity_gain", nn.Sequential(Res(w), nn.Linear(4, 3)), (x, y)) == pytest.approx(1.0, abs=1e-4)  # float32 central differences on 16 numbers
    # a diagonal map: tr(I + D)/n = 1 + mean(diag D), exact for any probe
    d = torch.diag(torch.tensor([0.5, -1.0, 2.0, 0.1]))
    assert proxies.compute("identity_gain", nn.Sequential(Res(d), nn.Linear(4, 3)), (x, y)) == pytest.approx(1 + 1.6 / 4, abs=1e-4)


def test_min_over_units_matches_a_float64_autograd_restatement_with_the_same_probes() -> None:
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(4, 4, generator=g), 0.3 * torch.randn(4, 4, generator=g)
    net = nn.Sequential(Res(w1, relu=True), nn.Tanh(), Res(w2, relu=True), Down(), nn.Linear(2, 3))
    x, y = batch(n=5)
    x = x[: ig.SAMPLES]
    ref = copy.deepcopy(net).double()
    h0 = x.double()
    h1 = ref[0](h0)
    h2 = ref[1](h1)
    vs = probes([h0.shape, h2.shape])
    gains = []
    for unit, inp, v in ((ref[0], h0, vs[0]), (ref[2], h2, vs[1])):
        inp = inp.detach().requires_grad_(True)
        (jt_v,) = torch.autograd.grad(unit(inp), inp, v)  # J^T v, and v^T J v = <J^T v, v>
        gains.append(float((jt_v * v).sum()) / inp.numel())
    assert proxies.compute("identity_gain", net, (x, y[: ig.SAMPLES])) == pytest.approx(min(gains), abs=1e-4)


def test_only_outermost_shape_preserving_units_count_and_a_plain_network_scores_zero() -> None:
    x, y = batch()
    # inner unit: y = 2x (gain 2); the outer unit negates it (gain -2): only the outer one counts
    assert proxies.compute("identity_gain", nn.Sequential(Outer(torch.eye(4)), nn.Linear(4, 3)), (x, y)) == pytest.approx(-2.0, abs=1e-4)
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))  # containers and leaves only
    assert proxies.compute("identity_gain", plain, (x, y)) == 0.0
    assert ig.blocks(nn.Sequential(Down(), nn.Linear(2, 3)), torch.randn(1, 4)) == []


def test_uses_the_first_samples_only_and_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    net = models.create("nb201", cell=SKIP_EDGE, C=4, N=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3 * ig.SAMPLES, 3, 32, 32, generator=g), torch.zeros(3 * ig.SAMPLES, dtype=torch.long)
    full = proxies.compute("identity_gain", net, (x, y))
    assert proxies.compute("identity_gain", net, (x[: ig.SAMPLES], y[: ig.SAMPLES])) == full
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_nb201_cells_are_the_units_and_identity_pooling_and_convolution_edges_separate() -> None:
    x = torch.randn(ig.SAMPLES, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.zeros(ig.SAMPLES, dtype=torch.long)
    nets = {}
    for name, cell in (("conv", CONV_EDGE), ("skip", SKIP_EDGE), ("pool", POOL_EDGE)):
        torch.manual_seed(0)
        nets[name] = models.create("nb201", cell=cell, C=8, N=2)
    # the normal cells count; the stride-2 reduction blocks (shape-changing) and their inner layers do not
    names = ig.blocks(nets["skip"], x[:1])
    assert len(names) == 3 * 2 and all(type(nets["skip"].get_submodule(n)).__name__ == "InferCell" for n in names)
    g = {k: proxies.compute("identity_gain", net, (x, y)) for k, net in nets.items()}
    # the input->output edge adds 1 (identity), about 1/9 (3x3 average pooling) or about 0 (random convolution)
    assert g["skip"] == pytest.approx(1.0, abs=0.15)
    assert abs(g["conv"]) < 0.15
    assert g["conv"] < g["pool"] < g["skip"] - 0.5
