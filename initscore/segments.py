"""Exact per-segment gradients of a sample-independent network in ONE forward/backward.

Used by batch mode (Eq. 7 of Yang et al., NeurIPS 2022): its overlapping sub-batches are
cut at every boundary into disjoint segments S_1..S_k, and each sub-batch gradient is the
sum of its segments' gradients g_S = sum_{i in S} dL_i/dtheta (L_i the per-sample loss)
divided by its size. That decomposition needs samples that do not interact: no BatchNorm
batch statistics (no BN, or BN with ``"calibrated"`` or ``"per_sample"`` statistics).

The trick: give every parameter tensor theta_l one alias theta_l^(s) per segment (a view:
the same values) and let the layer that owns theta_l apply theta_l^(s) to the rows of
segment s only. Row i's loss then depends on the aliases of its own segment and on nothing
of the others, so one backward of sum_i L_i gives, for every segment at once,

    d(sum_i L_i) / d theta_l^(s) = sum_{i in S_s} dL_i / d theta_l = g_{S_s}.

Cost: one forward and one backward over the B samples (each parametrized layer runs its
segments as separate calls of the same total size), where running the segments one after
another costs the same arithmetic plus one pass per segment of everything in between. With
``"calibrated"`` BatchNorm the statistics are measured in the same forward (per layer, on the
whole batch, detached: exactly what :func:`initscore.bn.calibrate` computes on that batch
and then freezes), so no separate calibration forward is needed.

Batch mode takes this route where :func:`initscore.grad_plan.decide` says it saves a pass (BatchNorm
with calibrated statistics and the default loss). Requirements (otherwise :func:`segmented_copy` returns
None and callers use the one-pass-per-segment route): every module that owns parameters directly is a
leaf module (it has no children: true for Conv, Linear, LayerNorm, the registry's ChannelBias and StatBN;
false for torchvision's ViT class token or MultiheadAttention), and no BatchNorm uses batch statistics.
Leaf modules are assumed to treat samples independently (all of PyTorch's parametrized
layers except BatchNorm do; StatBN is handled explicitly).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from initscore.bn import StatBN, tree_copy

__all__ = ["SegmentedNet", "segmented_copy"]


class _SegmentCat(torch.autograd.Function):
    """torch.cat of the segments' outputs whose backward SPLITS the gradient (split_with_sizes).

    torch's own cat backward narrows the gradient into slices; under create_graph the backward of
    each slice (NIO's double backward) builds a zero tensor of the whole batch's size and copies
    the slice into it -- 3 full-size zero fills per layer for 3 segments. split's backward is a cat
    (no zero fill). Same values (tests/engine/test_segments.py, to second order)."""

    @staticmethod
    def forward(ctx, sizes: list[int], *parts: Tensor) -> Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (None, *grad.split(ctx.sizes))


def _cat(parts: list[Tensor], sizes: Sequence[int]) -> Tensor:
    return _SegmentCat.apply(list(sizes), *parts)


def _direct_params(m: nn.Module) -> list[str]:
    return [n for n, _ in m.named_parameters(recurse=False)]


class _SegmentedLeaf(nn.Module):
    """Wraps a parametrized leaf: rows of segment s use ``seg_params[s]`` (aliases of its tensors)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.local = _direct_params(inner)
        self.sizes: Sequence[int] = ()
        self.seg_params: list[dict[str, Tensor]] = []
        forward = type(inner).forward
        if forward in (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward):
            self._call = self._conv
        elif forward is nn.Linear.forward:
            self._call = self._linear
        else:
            self._call = self._generic

    # one call per segment: p = {local name: alias}
    def _conv(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        return self.inner._conv_forward(x, p["weight"], p.get("bias"))  # type: ignore[operator]

    def _linear(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        return nn.functional.linear(x, p["weight"], p.get("bias"))

    def _generic(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Any other leaf: swap its parameter entries for the aliases around one call (what
        ``functional_call`` does, without its per-call set-up)."""
        own = self.inner._parameters
        saved = {k: own[k] for k in p}
        try:
            own.update(p)  # type: ignore[arg-type]
            return self.inner(x)
        finally:
            own.update(saved)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.inner, StatBN) and self.inner.mode == "calibrated":
            return self._calibrated_bn(x)
        parts = x.split(list(self.sizes))  # per-sample StatBN is per-sample too: the generic path
        return _cat([self._call(xs, p) for xs, p in zip(parts, self.seg_params)], self.sizes)

    def _calibrated_bn(self, x: Tensor) -> Tensor:
        """Statistics of the WHOLE batch (detached: the frozen ones calibrate() would measure here),
        then each segment normalized with its own affine aliases."""
        bn: StatBN = self.inner  # type: ignore[assignment]
        with torch.no_grad():
            _, mean, invstd = torch.ops.aten.native_batch_norm(x, None, None, None, None, True, 0.0, bn.eps)
        var = invstd.pow(-2) - bn.eps  # biased variance, as calibrate() stores it
        if not self.local:
            return nn.functional.batch_norm(x, mean, var, None, None, False, 0.0, bn.eps)
        parts = x.split(list(self.sizes))
        return _cat([nn.functional.batch_norm(xs, mean, var, p["weight"], p["bias"], False, 0.0, bn.eps)
                     for xs, p in zip(parts, self.seg_params)], self.sizes)


class SegmentedNet:
    """A private copy of a scoring network whose parametrized leaves run per segment."""

    def __init__(self, net: nn.Module, owners: dict[str, tuple[_SegmentedLeaf, str]]) -> None:
        self.net = net
        self.owners = owners  # full parameter name -> (wrapper, local name)
        self.wrappers = list({id(w): w for w, _ in owners.values()}.values())

    def segment_grads(self, params: dict[str, Tensor], x: Tensor, y: Tensor, sizes: Sequence[int],
                      create_graph: bool = False) -> list[dict[str, Tensor]]:
        """g_S = d/dtheta of sum_{i in S} cross_entropy(f(x_i), y_i) for consecutive segments of ``sizes``.

        Differentiable w.r.t. ``params`` when ``create_graph``. Parameters of the network
        that are not in ``params`` are used as they are and get no gradient.
        """
        k = len(sizes)
        aliases = {n: [params[n].view(params[n].shape) for _ in range(k)] for n in params}
        for w in self.wrappers:
            w.sizes = sizes
            w.seg_params = [{} for _ in range(k)]
        for full, (w, local) in self.owners.items():
            src = aliases.get(full)
            for s in range(k):
                w.seg_params[s][local] = src[s] if src is not None else getattr(w.inner, local)
        try:
            out = self.net(x)
            loss = nn.functional.cross_entropy(out, y, reduction="sum")
            names = list(aliases)
            flat = [a for n in names for a in aliases[n]]
            gs = torch.autograd.grad(loss, flat, create_graph=create_graph, allow_unused=True)
        finally:
            for w in self.wrappers:
                w.seg_params = []
        result: list[dict[str, Tensor]] = [{} for _ in range(k)]
        for j, n in enumerate(names):
            for s in range(k):
                g = gs[j * k + s]
                result[s][n] = g if g is not None else torch.zeros_like(params[n])
        return result


def segmented_copy(net: nn.Module) -> SegmentedNet | None:
    """A :class:`SegmentedNet` of scoring copy ``net`` (tensors shared), or None if unsupported."""
    seen: set[int] = set()
    for m in net.modules():
        if isinstance(m, _BatchNorm) or (isinstance(m, StatBN) and m.mode == "batch"):
            return None
        own = [p for p in m.parameters(recurse=False)]
        if own and any(True for _ in m.children()):
            return None
        if any(id(p) in seen for p in own):  # a tensor shared by two layers (tied weights)
            return None
        seen.update(id(p) for p in own)
    seg = tree_copy(net)
    owners: dict[str, tuple[_SegmentedLeaf, str]] = {}
    for parent_name, parent in list(seg.named_modules()):
        for child_name, child in list(parent.named_children()):
            if _direct_params(child):
                w = _SegmentedLeaf(child)
                setattr(parent, child_name, w)
                prefix = f"{parent_name}.{child_name}" if parent_name else child_name
                for local in w.local:
                    owners[f"{prefix}.{local}"] = (w, local)
    if not owners:  # the root itself owns the parameters: nothing to wrap
        return None
    return SegmentedNet(seg, owners)
