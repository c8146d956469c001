"""AZ-NAS (Lee & Ham, CVPR 2024): expressivity, progressivity and trainability of the block features.

A copy is re-initialized as the reference does (Conv/Linear weights Kaiming-normal, fan-in, ReLU gain,
from a generator seeded with ``seed``; their biases 0; BN affine 1/0), put in training mode, and a
batch of N(0, 1) inputs of the batch's shape (from the same generator; the reference's NAS-Bench-201
search feeds random inputs to AZ-NAS, ``trainloader=None``: the data's values are not used, only
its shape) goes forward once keeping the outputs f_0 (stem), f_1..f_L (every cell / reduction block
of an NB201-style network: a model with ``stem`` and ``cells``).

Expressivity of a block: with F = f_l as (B*H*W) x C rows, centered, Sigma = F^T F / (B*H*W),
s = eigenvalues of Sigma, p = s / sum(s):  e_l = sum_i -p_i log(p_i + 1e-8).
    az_expressivity  = sum_l e_l
    az_progressivity = min_l (e_l - e_{l-1})
Trainability: for l = L..1, g_out = random +-1 (Bernoulli 1/2, seeded) of f_l's shape,
g_in = (d f_l / d f_{l-1})^T g_out (one VJP through the block); when the spatial size halves, g_in is
pixel-unshuffled to g_out's grid; M = g_in^T g_out / (B*H*W) over the (C_in x C_out) channels;
sigma = the largest singular value of M; t_l = 2 - sigma - 1/(sigma + 1e-6).
    az_trainability  = mean_l t_l
A block whose VJP returns g_out unchanged (an identity cell) has t_l = -inf in the reference: here
that is an error for the architecture (ranked last, as -inf is). Complexity s^C is the ``flops`` proxy.

Source: the paper (Eqs. 2-8) and the authors' code (cvlab-yonsei/AZ-NAS, ``compute_az_nas_score``:
``torch.linalg.eigvalsh`` of the covariance, ``-p*log(p+1e-8)``, ``np.min`` of consecutive differences,
reversed-order ``torch.autograd.grad`` with Bernoulli +-1 cotangents, ``nn.PixelUnshuffle``,
``torch.linalg.svdvals``, ``-s - 1/(s+1e-6) + 2``). Differences: float64 eigen/singular values
(reference float32); seeded generators for the init, the inputs and the cotangents (reference: the
global RNG). Reference file: NB201/ZeroShotProxy/compute_az_nas_score.py with
``init_method='kaiming_norm_fanin'`` and ``model.extract_cell_features`` (stem + every cell).
The non-linear rank aggregation of the four scores is set-level: ``initscore.proxies.aggregate``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from initscore.errors import NonFiniteError, OptionsError
from initscore.proxies.common import WEIGHT_LAYERS, finite, private_copy

AZ = ("az_expressivity", "az_progressivity", "az_trainability")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


def blocks(net: nn.Module) -> list[nn.Module]:
    stem, cells = getattr(net, "stem", None), getattr(net, "cells", None)
    if not isinstance(stem, nn.Module) or not isinstance(cells, (nn.Sequential, nn.ModuleList)):
        raise OptionsError("the AZ-NAS proxies need a cell-based network with `stem` and `cells` (e.g. nb201)")
    return [stem, *cells]


def kaiming_fanin_(net: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, WEIGHT_LAYERS):
                fan_in = m.weight[0].numel()
                std = math.sqrt(2.0) / math.sqrt(fan_in)
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, device=m.weight.device) * std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _BN) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()


def expressivity_entropy(f: torch.Tensor) -> float:
    b, c = f.shape[0], f.shape[1]
    rows = f.detach().double().movedim(1, -1).reshape(-1, c)
    rows = rows - rows.mean(0, keepdim=True)
    sigma = rows.T @ rows / rows.shape[0]
    s = torch.linalg.eigvalsh(sigma)
    p = s / s.sum()
    return float((-p * torch.log(p + 1e-8)).sum())


def trainability_term(g_in: torch.Tensor, g_out: torch.Tensor) -> float:
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        raise NonFiniteError("proxy 'az_trainability': a block is the identity (the reference's -inf)", tensor=None)
    if g_in.shape[2:] != g_out.shape[2:]:
        g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // g_out.shape[2])
    co, ci = g_out.shape[1], g_in.shape[1]
    a = g_in.double().movedim(1, -1).reshape(-1, ci)
    b = g_out.double().movedim(1, -1).reshape(-1, co)
    m = a.T @ b / b.shape[0]
    s = float(torch.linalg.svdvals(m)[0])
    return -s - 1.0 / (s + 1e-6) + 2.0


def az_nas_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1,
                   seed: int = 0) -> tuple[dict[str, float], dict[str, Exception]]:
    want = [n for n in names if n in AZ]
    net = private_copy(model).train()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    kaiming_fanin_(net, gen)
    inputs = torch.randn(x.shape, generator=gen, device=x.device)
    feats: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: feats.append(o)) for b in blocks(net)]
    try:
        with torch.set_grad_enabled("az_trainability" in want):
            net(inputs)
    finally:
        for h in hooks:
            h.remove()
    values: dict[str, float] = {}
    errors: dict[str, Exception] = {}
    if "az_expressivity" in want or "az_progressivity" in want:
        e = np.array([expressivity_entropy(f) for f in feats])
        for name, fn in (("az_expressivity", lambda: e.sum()), ("az_progressivity", lambda: np.min(e[1:] - e[:-1]))):
            if name in want:
                try:
                    values[name] = finite(name, float(fn()))
                except NonFiniteError as exc:
                    errors[name] = exc
    if "az_trainability" in want:
        try:
            terms = []
            for l in reversed(range(1, len(feats))):
                f_out, f_in = feats[l], feats[l - 1]
                g_out = (torch.bernoulli(torch.full(f_out.shape, 0.5, device=x.device), generator=gen) - 0.5) * 2
                (g_in,) = torch.autograd.grad(f_out, f_in, g_out, retain_graph=False)
                terms.append(trainability_term(g_in, g_out))
            values["az_trainability"] = finite("az_trainability", float(np.mean(terms)))
        except NonFiniteError as exc:
            errors["az_trainability"] = exc
    return values, errors
