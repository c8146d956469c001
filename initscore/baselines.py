"""Baseline initialization rectifiers run through :func:`initscore.nio.rectify`.

Both learn the same per-tensor scales s_l (theta_l = s_l w_l) as NIO, with the
same outer optimizer, clamp at ``min_scale``, history and held-out measurement;
only the objective differs. The history's gc/gn/g_max are the first-order
GC/GN/g_max of the rectification's ``mode`` (so curves of all methods are
comparable); ``constrained`` is the method's own constraint branch.

GradInit (Zhu et al., "GradInit: Learning to Initialize Neural Networks for
Stable and Efficient Training", NeurIPS 2021), SGD variant. The batch is split
into halves S1, S2; g = grad L(S1; theta)::

    if ||g||_2 > gamma:  minimize ||g||_2                                  (constraint branch)
    else:                minimize L(S2; theta - eta g / ||g||_2),  eta = GRADINIT_INNER_LR

differentiating through g and ||g|| (second order). gamma=None -> 2 x the initial ||g||. The inner
step uses the NORMALIZED gradient, as every CIFAR run of GradInit's launch scripts
(``--gradinit-normalize-grad`` in zhuchen03/gradinit ``launch/run_gradinit*.sh``; the step
``theta - eta g / ||g||`` is taken in ``gradinit_utils.gradinit``): a step of length eta whatever the
gradient's size.

MetaInit (Dauphin & Schoenholz, "MetaInit: Initializing learning by learning to
initialize", NeurIPS 2019): minimize the gradient quotient::

    GQ = 1/m sum_k | (g_k - (H g)_k) / (g_k + eps sign(g_k)) - 1 |,   eps = METAINIT_EPS

with H g = grad(||g||^2 / 2) the Hessian-vector product (as the MetaInit code), through
third-order autograd. No gamma (reported None); never constrained.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.func import functional_call

from initscore.errors import NonFiniteError, OptionsError
from initscore.nio import Context, measure, nio_objective

GRADINIT_INNER_LR = 0.1
METAINIT_EPS = 1e-5


def _check(names: list[str], grads: tuple[Tensor, ...], what: str) -> None:
    for n, g in zip(names, grads):
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError(f"non-finite {what} in parameter tensor {n!r}", tensor=n)


def _grads(loss: Tensor, tensors: list[Tensor]) -> tuple[Tensor, ...]:
    gs = torch.autograd.grad(loss, tensors, create_graph=True, allow_unused=True)
    return tuple(g if g is not None else torch.zeros_like(t) for g, t in zip(gs, tensors))


def gradinit_objective(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor
                       ) -> tuple[Tensor, dict[str, float], bool]:
    """GradInit (SGD variant): loss after one gradient step on the other half, under ||g|| <= gamma."""
    if x.shape[0] < 2:
        raise OptionsError("gradinit needs batches of at least 2 samples (it splits each batch in halves)")
    record = measure(ctx, params, x, y)
    h = x.shape[0] // 2
    ctx.calibrate(params, x)
    names, tensors = list(params), list(params.values())
    g = _grads(ctx.loss_fn(functional_call(ctx.net, params, (x[:h],)), y[:h]), tensors)
    _check(names, g, "gradient")
    gnorm = torch.sqrt(sum(torch.sum(t * t, dtype=torch.float64) for t in g))
    if ctx.gamma is None:
        ctx.gamma = 2.0 * float(gnorm.detach())
    constrained = float(gnorm.detach()) > ctx.gamma
    if constrained:
        return gnorm, record, True
    unit = GRADINIT_INNER_LR / gnorm.clamp_min(1e-30)
    stepped = {n: t - (unit.to(gi.dtype) * gi) for n, t, gi in zip(names, tensors, g)}
    return ctx.loss_fn(functional_call(ctx.net, stepped, (x[h:],)), y[h:]), record, False


def metainit_objective(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor
                       ) -> tuple[Tensor, dict[str, float], bool]:
    """MetaInit: mean absolute gradient quotient |(g - Hg)/(g + eps sign g) - 1|."""
    record = measure(ctx, params, x, y)
    ctx.calibrate(params, x)
    names, tensors = list(params), list(params.values())
    g = _grads(ctx.loss_fn(functional_call(ctx.net, params, (x,)), y), tensors)
    _check(names, g, "gradient")
    hg = _grads(sum((gi * gi).sum() / 2 for gi in g), tensors)  # H g = grad(||g||^2 / 2)
    _check(names, hg, "Hessian-vector product")
    total = sum(t.numel() for t in tensors)
    gq = 0.0
    for gi, hi in zip(g, hg):
        sign = torch.where(gi.detach() >= 0, 1.0, -1.0).to(gi.dtype)
        gq = gq + ((gi - hi) / (gi + METAINIT_EPS * sign) - 1.0).abs().sum()
    return gq / total, record, False


OBJECTIVES: dict[str, Callable[..., tuple[Tensor, dict[str, float], bool]]] = {
    "nio": nio_objective,
    "gradinit": gradinit_objective,
    "metainit": metainit_objective,
}
