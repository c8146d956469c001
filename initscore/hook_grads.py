"""Per-sample gradients from ONE batched forward and backward with layer hooks (torch).

The Opacus recipe (Yousefpour et al. 2021, "Opacus: User-Friendly Differential Privacy
Library in PyTorch"; Goodfellow 2015, "Efficient per-example gradient computations"): when
the samples of a batch do not interact, the gradient of the summed loss with respect to a
layer's output, taken at row n, is the gradient of sample n's own loss. Every trainable
tensor's per-sample gradient is then a per-row product of the layer's input a and that
output gradient d (no second network pass, no vmap). Those products are the per-layer rules
registered in :mod:`initscore.grad_samplers` (Linear, Conv2d, StatBN there; model families
register their own layers).

The backward asks autograd only for d = dL/dy of the hooked layers' outputs (no weight
gradient is ever formed for the batch), L = sum_n CE(z_n, y_n): the default loss, per sample.

It applies only when every trainable tensor belongs to a layer with a registered grad sampler
and every other leaf module is registered as sample-wise (:func:`unsupported_reason`); otherwise callers
use ``vmap(grad)`` (:func:`initscore.scores.sample_grad_fn`), which gives the same numbers
(tests/engine/test_hook_grads.py, float64); :mod:`initscore.grad_plan` picks the hooks where they are the
faster of the two (networks with per-sample BatchNorm). First order only:
NIO's sample mode, which differentiates through the gradients, keeps vmap.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from initscore.grad_samplers import GradSampler, is_samplewise, sampler_for


def _owned(mod: nn.Module, prefix: str, params: dict[str, Tensor]) -> dict[str, str]:
    """{'weight'|'bias': full name} of mod's own trainable tensors."""
    out = {}
    for attr, p in mod._parameters.items():
        name = f"{prefix}.{attr}" if prefix else attr
        if p is not None and name in params:
            out[attr] = name
    return out


Layer = tuple[nn.Module, dict[str, str], GradSampler]


def _layers(net: nn.Module, params: dict[str, Tensor]) -> tuple[list[Layer], str | None]:
    """The hooked layers with their tensors' names and rules, or (.., reason) when the hook path does not apply."""
    layers: list[Layer] = []
    covered: set[str] = set()
    seen: set[int] = set()
    for prefix, mod in net.named_modules(remove_duplicate=False):
        owned = _owned(mod, prefix, params)
        if id(mod) in seen:
            if owned:
                return [], f"module {prefix!r} is registered twice"
            continue
        seen.add(id(mod))
        sampler = sampler_for(mod)
        if sampler is not None:
            reason = sampler.check(mod, frozenset(owned)) if sampler.check is not None else None
            if reason is not None:
                return [], f"{prefix!r}: {reason}"
        elif owned:
            return [], f"{prefix!r} ({type(mod).__name__}) holds a trainable tensor no grad sampler is registered for"
        elif not list(mod.children()) and not is_samplewise(mod):
            return [], f"{prefix!r}: leaf module {type(mod).__name__} is not known to be sample-wise"
        if owned:
            layers.append((mod, owned, sampler))
            covered.update(owned.values())
    missing = [n for n in params if n not in covered]
    if missing:
        return [], f"trainable tensor {missing[0]!r} belongs to no hooked layer"
    return layers, None


def unsupported_reason(net: nn.Module, params: dict[str, Tensor]) -> str | None:
    """None when :func:`hook_grad_fn` applies to ``net`` (a scoring copy) and ``params``, else why not."""
    return _layers(net, params)[1]


def _per_sample(layer: Layer, a: Tensor, o: Tensor, d: Tensor, out: dict[str, Tensor]) -> None:
    """Add the layer's per-sample gradients from input a, output o and output gradient d (rows = samples) to out."""
    mod, owned, sampler = layer
    found = sampler.fn(mod, frozenset(owned), a, o, d)
    for attr, name in owned.items():
        gi = found[attr]
        out[name] = out[name] + gi if name in out else gi


def hook_grad_fn(net: nn.Module, params: dict[str, Tensor], *, when: str = "faster"
                 ) -> Callable[[dict[str, Tensor], Tensor, Tensor], dict[str, Tensor]] | None:
    """For a scoring copy made outside :mod:`initscore.grad_plan`: :func:`build` where the plan would take the
    hook route, else None (the caller then uses vmap).

    when="faster" (default): only where :func:`initscore.grad_plan.hooks_preferred` says so (fast paths on and
    per-sample BatchNorm, which vmap runs as primitive ops); the copy's per-sample StatBN layers are then set to
    the instance-norm kernel, as :func:`initscore.grad_plan.prepare` does. when="always": whenever the hook path
    applies, with the copy as it is.
    """
    if when not in ("faster", "always"):
        raise ValueError(f"when must be 'faster' or 'always', got {when!r}")
    from initscore import grad_plan

    if when == "faster" and not grad_plan.hooks_preferred(net):
        return None
    fn = build(net, params)
    if fn is not None and when == "faster":
        grad_plan.use_instance_kernel(net)
    return fn


def build(net: nn.Module, params: dict[str, Tensor]
          ) -> Callable[[dict[str, Tensor], Tensor, Tensor], dict[str, Tensor]] | None:
    """(params, x, y) -> {name: (c, *shape)} per-sample gradients of the mean cross-entropy, or None when
    the hook path does not apply (:func:`unsupported_reason`). Same contract as ``sample_grad_fn(net,
    default_loss)``; the result is not differentiable with respect to ``params``. The network runs as it is
    (its StatBN kernels are the plan's: :func:`initscore.grad_plan.prepare`).
    """
    layers, reason = _layers(net, params)
    if reason is not None:
        return None

    def fn(p: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
        calls: list[tuple[Layer, Tensor, int, Tensor, int]] = []

        def record(layer: Layer, inp: tuple[Tensor, ...], output: Tensor) -> None:
            a = inp[0]
            calls.append((layer, a.detach(), a._version, output, output._version))

        handles = [layer[0].register_forward_hook(lambda m, i, o, layer=layer: record(layer, i, o))
                   for layer in layers]
        try:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)  # so every layer output is in the graph; its grad is not asked
                logits = functional_call(net, {n: t.detach() for n, t in p.items()}, (xg,))
                loss = F.cross_entropy(logits, y, reduction="sum")  # sum_n CE(z_n, y_n): row n of dL/dy is sample n's
        finally:
            for h in handles:
                h.remove()
        if any(a._version != av or o._version != ov for _, a, av, o, ov in calls):
            # a layer's input or output was changed in place after the layer ran: the recorded tensors no
            # longer hold what the layer saw, so this batch takes the vmap path
            del calls, loss, logits
            from initscore.scores import default_loss, sample_grad_fn

            return sample_grad_fn(net, default_loss)(p, x, y)
        outs = [c[3] for c in calls]
        grads = torch.autograd.grad(loss, outs, allow_unused=True)
        del loss, logits
        result: dict[str, Tensor] = {}
        with torch.no_grad():
            for (layer, a, _, o, _), d in zip(calls, grads):
                _per_sample(layer, a, o.detach(), torch.zeros_like(o) if d is None else d, result)
        B = x.shape[0]
        for n, t in p.items():  # a layer never called in this forward contributes zero
            if n not in result:
                result[n] = torch.zeros((B, *t.shape), dtype=t.dtype, device=t.device)
        return {n: result[n] for n in p}

    return fn
