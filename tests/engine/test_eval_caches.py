"""Modules that cache a parameter-derived tensor in eval mode (the pattern of timm's LeViT/TinyViT attention
biases) score and rectify as the same network without the cache, against naive float64 references."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from initscore import nio
from initscore.bn import scoring_copy, tree_copy
from initscore.scores import batch_splits, gradcosine

from engine_helpers import flat_grad, naive_scores

F = nn.functional


class CachedBias(nn.Module):
    """out = x + table[:, idx] summed over heads, with timm's eval-mode cache: in eval mode ``table[:, idx]`` is
    computed once and kept in ``bias_cache`` until ``train()`` or ``_apply`` drops it."""

    def __init__(self, d: int, heads: int = 3) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(heads, d))
        self.register_buffer("idx", torch.randperm(d), persistent=False)
        self.bias_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def train(self, mode: bool = True) -> "CachedBias":
        super().train(mode)
        if self.bias_cache:
            self.bias_cache = {}
        return self

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.bias_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def biases(self, device: torch.device) -> torch.Tensor:
        if self.training:
            return self.table[:, self.idx]
        key = str(device)
        if key not in self.bias_cache:
            self.bias_cache[key] = self.table[:, self.idx]
        return self.bias_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.biases(x.device).sum(0))


def cached_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), CachedBias(8), nn.Tanh(), nn.Linear(8, 4)).double()


def _data(B: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, 6, dtype=torch.float64), torch.randint(0, 4, (B,))


def _no_cache_copy(net: nn.Module) -> nn.Module:
    """The reference network: a deep copy in train mode, where CachedBias never caches (no other layer of
    cached_net depends on the mode)."""
    return copy.deepcopy(net).train()


def _sample_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    ref = _no_cache_copy(net)
    return naive_scores([flat_grad(ref, F.cross_entropy(ref(x[i:i + 1]), y[i:i + 1])) for i in range(len(x))])


def _batch_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor, D: int, r: float) -> dict:
    ref = _no_cache_copy(net)
    return naive_scores([flat_grad(ref, F.cross_entropy(ref(x[s:e]), y[s:e])) for s, e in batch_splits(len(x), D, r)])


@pytest.mark.parametrize("chunk", [None, 2, 1])
def test_sample_mode_with_an_eval_cache_matches_the_naive_loop(chunk):
    net = cached_net()
    x, y = _data()
    ref = _sample_reference(net, x, y)
    s = gradcosine(net.eval(), (x, y), mode="sample", chunk_size=chunk)
    assert s.gc == pytest.approx(ref["gc"], rel=1e-10)
    assert s.gn == pytest.approx(ref["gn"], rel=1e-10)
    table = next(l for l in s.layers if l.name == "2.table")
    assert table.gn == pytest.approx(ref["layers"]["2.table"]["gn"], rel=1e-10)


def test_batch_mode_with_an_eval_cache_matches_the_naive_loop():
    net = cached_net()
    x, y = _data(8)
    ref = _batch_reference(net, x, y, 3, 0.5)
    s = gradcosine(net.eval(), (x, y), mode="batch", sub_batches=3, overlap=0.5)
    assert s.gc == pytest.approx(ref["gc"], rel=1e-10)
    assert s.gn == pytest.approx(ref["gn"], rel=1e-10)


def test_a_cache_the_caller_already_holds_is_not_used_nor_changed():
    """The caller ran its model in eval mode (its cache holds table[:, idx] of its own parameters); scoring and
    rectifying neither read that tensor (no gradient path through it) nor write into the caller's cache."""
    net = cached_net().eval()
    x, y = _data()
    with torch.no_grad():
        net(x)
    mod = net[2]
    held = dict(mod.bias_cache)
    cache_obj = mod.bias_cache
    s = gradcosine(net, (x, y), mode="sample")
    b = gradcosine(net, (x, y), mode="batch", sub_batches=2, overlap=0.0)
    assert s.gc == pytest.approx(_sample_reference(net, x, y)["gc"], rel=1e-10)
    assert b.gc == pytest.approx(_batch_reference(net, x, y, 2, 0.0)["gc"], rel=1e-10)
    nio.rectify(net, (x, y), iters=1, mode="batch", sub_batches=2)
    assert mod.bias_cache is cache_obj and list(mod.bias_cache) == list(held)
    assert all(mod.bias_cache[k] is held[k] for k in held)
    assert not net.training


def test_private_copies_do_not_write_into_the_callers_empty_cache():
    net = cached_net().eval()
    x, _ = _data()
    for copy_fn in (tree_copy, lambda m: scoring_copy(m, "calibrated", primitive=False)):
        c = copy_fn(net).eval()
        with torch.no_grad():
            c(x)
        assert net[2].bias_cache == {}


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_rectify_measures_each_iterate_with_its_own_scaled_table(mode):
    """history[1] is GC of the scales after one step, measured by the engine on its private copy; it must equal
    the naive reference on the network with those scales applied (a stale cache would keep step 0's table)."""
    net = cached_net()
    x, y = _data(8)
    kw = dict(mode=mode, sub_batches=2, overlap=0.0, lr=0.3, gamma=1e6)
    two = nio.rectify(net.eval(), (x, y), iters=2, **kw)
    one = nio.rectify(net.eval(), (x, y), iters=1, **kw)
    assert one.scales["2.table"] != 1.0
    stepped = copy.deepcopy(net)
    stepped.load_state_dict(one.state_dict)
    ref = (_sample_reference(stepped, x, y) if mode == "sample" else _batch_reference(stepped, x, y, 2, 0.0))
    assert two.history[1]["gc"] == pytest.approx(ref["gc"], rel=1e-9)
    assert two.history[1]["gn"] == pytest.approx(ref["gn"], rel=1e-9)


def test_a_kept_tensor_with_a_gradient_history_does_not_stop_the_engines_copies():
    """After a grad-enabled eval forward the caller's cache holds a non-leaf tensor, which copy.deepcopy refuses;
    rectify's held-out scoring, its rectified state and the propagation report copy the model anyway."""
    from initscore import propagation

    net = cached_net().eval()
    x, y = _data()
    net(x)
    assert net[2].bias_cache["cpu"].grad_fn is not None
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(net)
    r = nio.rectify(net, (x, y), iters=1, mode="batch", sub_batches=2, overlap=0.0, heldout=[(x, y)])
    stepped = copy.deepcopy(net.train()).eval()
    stepped.load_state_dict(r.state_dict)
    assert r.heldout_after["gc"] == pytest.approx(_batch_reference(stepped, x, y, 2, 0.0)["gc"], rel=1e-9)
    net.eval()(x)
    rep = propagation.report(net, (x, y))
    assert "2" in [layer.name for layer in rep.layers]
