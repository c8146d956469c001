"""SWAP-Score (Peng et al., ICLR 2024): sample-wise activation patterns.

A copy of the network is re-initialized as the reference does (Conv/Linear weights N(0, 1), their
biases 0, BatchNorm affine weight 1 / bias 0) and run once, without gradients, in training mode on
the first n = min(16, B) samples. Every nn.ReLU whose input is 4-d contributes its output (a model
without any, e.g. an MLP, uses all its ReLUs instead: an extension, the reference returns nothing); the
outputs are concatenated per sample into A (n x D) and

    swap     = number of distinct rows of sign(A)^T      (one row per neuron: its pattern over the n samples)
    swap_reg = swap * exp(-(P - mu)^2 / sigma),  P = number of parameters / 1000

ReLU outputs are >= 0, so sign is 0/1 and a neuron's pattern is an n-bit integer: the distinct rows
are counted as distinct integers (exactly ``torch.unique(dim=0)`` of the reference, far cheaper).

Source: the paper (Eqs. 2-4) and the authors' code (``src/metrics/swap.py``: ReLU forward hooks on
4-d inputs, ``torch.sign``, transpose, ``torch.unique(dim=0).size(0)``, ``cal_regular_factor`` =
exp(-(params_K - mu)^2 / sigma); ``correlation.py``: ``network_weight_gaussian_init``, 16 input samples).
Differences: one re-initialization (the reference averages ``--repeats 32``), drawn from a generator
seeded with ``seed`` (default 0); mu and sigma of swap_reg are this project's constants below (the
reference takes them as arguments: the size the search should favour): MU_K is the largest network
of NAS-Bench-201 (1,531.546 K parameters, a property of the space) and SIGMA_K2 = 5e5 K^2 (a width of
about 700 K parameters) was set by hand before any measurement, not tuned on accuracies.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from initscore.errors import NonFiniteError, OptionsError
from initscore.proxies.common import WEIGHT_LAYERS, finite, independent_copy

SAMPLES = 16
MU_K = 1531.546
SIGMA_K2 = 5.0e5
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


def regular_factor(n_params: float, mu: float = MU_K, sigma: float = SIGMA_K2) -> float:
    return math.exp(-((n_params / 1e3 - mu) ** 2) / sigma)


def pattern_codes(signs: torch.Tensor) -> torch.Tensor:
    """Each column of a 0/1 (n x D) matrix, n <= 62, as the n-bit integer sum_i signs[i] * 2^i."""
    n = signs.shape[0]
    if n > 62:
        raise OptionsError(f"swap packs one bit per sample into int64: at most 62 samples, got {n}")
    codes = torch.zeros(signs.shape[1], dtype=torch.int64, device=signs.device)
    for i in range(n):
        codes |= signs[i].to(torch.int64) << i
    return codes


def count_patterns(signs: torch.Tensor) -> int:
    """Distinct columns of a 0/1 (n x D) matrix (= torch.unique(signs.T, dim=0).shape[0])."""
    return int(torch.unique(pattern_codes(signs)).numel())


def swap_count(model: nn.Module, x: torch.Tensor, *, samples: int = SAMPLES, seed: int = 0) -> int:
    net = independent_copy(model).train()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, WEIGHT_LAYERS):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, device=x.device, dtype=m.weight.dtype))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _BN) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    xs = x[:samples]
    feats: list[torch.Tensor] = []  # ReLUs on 4-d feature maps (the reference's choice)
    flat: list[torch.Tensor] = []  # other ReLUs: used only when a model has no 4-d one (an MLP)

    def hook(module, inp, out):
        if isinstance(inp, tuple) and inp and inp[0].dim() >= 2 and out.shape[0] == xs.shape[0]:
            (feats if inp[0].dim() == 4 else flat).append(pattern_codes((out.detach() > 0).reshape(out.shape[0], -1)))

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(xs)
    finally:
        for h in hooks:
            h.remove()
    feats = feats or flat
    if not feats:
        raise OptionsError("proxy 'swap' needs nn.ReLU modules")
    return int(torch.unique(torch.cat(feats)).numel())


def swap_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    n = swap_count(model, x)
    if n <= 0:
        raise NonFiniteError("proxy 'swap': no activation pattern", tensor=None)
    out = {}
    if "swap" in names:
        out["swap"] = float(n)
    if "swap_reg" in names:
        p = sum(q.numel() for q in model.parameters())
        out["swap_reg"] = finite("swap_reg", n * regular_factor(p))
    return out
