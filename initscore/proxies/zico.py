"""ZiCo (Li et al., ICLR 2023): inverse coefficient of variation of the gradients across batches.

With g_s = dL_s/dW the gradient of the mean cross-entropy on sub-batch s = 1..S (training-mode BN,
each sub-batch its own statistics), per Conv/Linear layer l and weight entry theta:

    mu_theta    = mean_s |g_s[theta]|
    sigma_theta = std_s g_s[theta]            (population std, ddof = 0)
    zico = sum_l log( sum_{theta: sigma_theta != 0} mu_theta / sigma_theta )
           (a layer whose sum is 0 adds nothing)

Source: the paper's Eq. (ZiCo) and the authors' code (SLDGroup/ZiCo, ``ZeroShotProxy/compute_zico.py``:
``getgrad`` collects each Conv2d/Linear weight gradient per batch, ``caculate_zico`` takes
``np.std(axis=0)``, ``np.mean(np.abs(...), axis=0)``, ``np.sum`` of the ratio over nonzero std, ``np.log``).
Differences: the reference draws S = 2 batches from the train loader (64 images each in the NB201
runs); here the ONE batch is split into S = 2 consecutive halves (so 32 images each), because the
service's contract is one batch; statistics are accumulated in float64 (reference: float32 numpy).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from initscore.errors import NonFiniteError
from initscore.proxies.common import chunk_bounds, finite, private_copy, weight_layers

SPLITS = 2


def zico_from_gradients(per_split: list[list[torch.Tensor]]) -> float:
    """ZiCo of per-split gradients: per_split[s][l] = gradient of layer l on split s."""
    total = 0.0
    for layer in zip(*per_split):
        g = torch.stack([t.double().reshape(-1) for t in layer])
        std = g.std(0, unbiased=False)
        nz = std != 0
        s = float((g.abs().mean(0)[nz] / std[nz]).sum())
        if s != 0:
            total += math.log(s)
    return total


def zico_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1,
                 splits: int = SPLITS) -> dict[str, float]:
    if x.shape[0] < splits:
        raise NonFiniteError(f"proxy 'zico' needs at least {splits} samples (one per sub-batch), got {x.shape[0]}", tensor=None)
    net = private_copy(model).train()
    weights = [m.weight for _, m in weight_layers(net)]
    per_split: list[list[torch.Tensor]] = []
    for st, en in chunk_bounds(x.shape[0], splits):
        out = net(x[st:en])
        if not torch.isfinite(out).all():
            raise NonFiniteError("proxy 'zico': the model's output is NaN/inf on this batch", tensor=None)
        g = torch.autograd.grad(F.cross_entropy(out, y[st:en]), weights, allow_unused=True)
        per_split.append([torch.zeros_like(w) if gi is None else gi.detach() for w, gi in zip(weights, g)])
        del out, g
    return {"zico": finite("zico", zico_from_gradients(per_split))}
