"""Tiny networks and naive float64 references shared by the engine tests."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn


def tiny_conv(bn: bool = False, act: type[nn.Module] = nn.Tanh, classes: int = 5) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [act(), nn.Conv2d(4, 4, 3, stride=2, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [act(), nn.Flatten(), nn.Linear(4 * 3 * 3, classes)]
    return nn.Sequential(*layers)


def tiny_mlp(act: type[nn.Module] = nn.Tanh, d_in: int = 6, hidden: int = 7, classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, classes))


def flat_grad(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    ps = [p for n, p in model.named_parameters() if p.requires_grad]
    gs = torch.autograd.grad(loss, ps, allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)).reshape(-1) for n, p, g in zip(names, ps, gs)}


def naive_scores(grads: list[dict[str, torch.Tensor]]) -> dict:
    """GC as the mean of the full n x n cosine matrix (float64), GN etc., per layer too."""
    names = list(grads[0])
    G = torch.stack([torch.cat([g[n] for n in names]) for g in grads]).double()
    norms = G.norm(dim=1)
    cos = (G @ G.T) / (norms[:, None] * norms[None, :])
    out = {"gc": float(cos.mean()), "gn": float(norms.mean()), "g_max": float(norms.max()),
           "g_min": float(norms.min()), "layers": {}}
    for n in names:
        L = torch.stack([g[n] for g in grads]).double()
        ln = L.norm(dim=1)
        c = (L @ L.T) / (ln[:, None] * ln[None, :])
        out["layers"][n] = {"gc": float(c.mean()), "gn": float(ln.mean()),
                            "norm_ratio": float(ln.max() / ln.min())}
    return out


def calibrated_eval_copy(model: nn.Module, x: torch.Tensor, correction: int = 0) -> nn.Module:
    """A copy whose BN layers use the batch's mean and variance in eval mode (hand-made calibration): the BIASED
    variance with ``correction=0`` (what ``bn="calibrated"`` uses), the unbiased one with 1 (BN's running_var)."""
    m = copy.deepcopy(model)
    stats = {}
    hooks = []
    for name, mod in m.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            def hook(module, inp, name=name):
                v, mu = torch.var_mean(inp[0], dim=(0, 2, 3), correction=correction)
                stats[name] = (mu.detach(), v.detach())
            hooks.append(mod.register_forward_pre_hook(hook))
    m.train()
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    for name, mod in m.named_modules():
        if name in stats:
            mod.running_mean.copy_(stats[name][0])
            mod.running_var.copy_(stats[name][1])
    m.eval()
    return m


def calibrated_batch_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                               splits: list[tuple[int, int]], correction: int = 0) -> dict:
    """Batch-mode scores with calibrated BN from first principles: :func:`calibrated_eval_copy`, the gradient of
    each sub-batch's mean cross-entropy, :func:`naive_scores` (GC over all pairs, diagonal included)."""
    m = calibrated_eval_copy(model, x, correction)
    return naive_scores([flat_grad(m, nn.functional.cross_entropy(m(x[s:e]), y[s:e])) for s, e in splits])
