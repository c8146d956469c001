"""BatchNorm handling for the gradient scores (torch).

Sample-wise scores need an explicit decision about BatchNorm, because a BN layer
in training mode couples the samples of a batch through its statistics. The
engine never touches the caller's model: it scores a private *scoring copy* in
which every ``nn.modules.batchnorm._BatchNorm`` is replaced by a
:class:`StatBN` with the SAME parameter names (``<path>.weight``,
``<path>.bias``), so parameter dictionaries of the caller's model can be passed
to ``torch.func.functional_call`` on the copy unchanged.

``StatBN`` normalizes in one of three modes (the ``bn=`` argument of
:func:`initscore.scores.gradcosine` and :func:`initscore.nio.rectify`):

``"batch"``
    statistics of the (sub-)batch it sees, as in training mode, but no running
    statistic is updated. Samples are coupled.
``"calibrated"``
    mean and biased variance computed once on the whole scoring batch (one
    no-grad forward, ``calibrate``), then frozen: eval-mode normalization. The
    network is then a per-sample function; a sample's gradient does not depend
    on which other samples share its chunk. Because the variance is the biased
    one, the calibrated forward of the full batch equals the ``"batch"``
    forward of the full batch.
``"per_sample"``
    each sample normalized with its own statistics over its spatial positions
    (instance statistics, per channel). Needs spatial dimensions.

Under ``torch.func.vmap`` (sample mode) the layer uses primitive ops
(``torch.var_mean``) instead of the BN kernel: torch 2.13's vmap gives
second-order gradients through the batch-statistics BN kernel that are wrong by
~5e-3 relative (first order is exact). ``primitive=True`` selects that path;
tests/engine/test_bn_double_backward.py compares it to a non-vmap loop.

The copy is put in eval mode (dropout off); ``StatBN`` ignores the flag and
follows its ``mode``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from initscore import mode_caches
from initscore.errors import OptionsError

BN_MODES = ("batch", "calibrated", "per_sample")


def _bn_view(x: torch.Tensor) -> list[int]:
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


def _bn_double_backward(gy, x, w, mean, invstd, gw, gb, Gx, Gw, Gb, eps, differentiable):  # type: ignore[no-untyped-def]
    """The vector-Jacobian product of :class:`_BatchStatNormBackward` (formulas in its docstring).

    ``differentiable=False`` (second order): the saved statistics and BN-backward outputs are
    reused and full-size temporaries are few and updated in place (large short-lived CPU
    allocations are returned to the OS and page-faulted back on every call).
    ``differentiable=True`` (third order asked for): statistics, a and b are recomputed from
    (gy, x) by differentiable ops, so autograd through this function is exact.
    """
    dims = [0] + list(range(2, x.dim()))
    shape = _bn_view(x)
    M = x.numel() // x.shape[1]
    if differentiable:
        var, mu = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        r = torch.rsqrt(var + eps)
        xh = (x - mu) * r
        a, b = gy.mean(dims, keepdim=True), (gy * xh).mean(dims, keepdim=True)
    else:
        r = invstd.view(shape)
        xh = (x - mean.view(shape)).mul_(r)
        if w is None:
            gb, gw = gy.sum(dims), (gy * xh).sum(dims)
        a, b = (gb / M).view(shape), (gw / M).view(shape)
    tmp = None if differentiable else torch.empty_like(x)

    def mean_of_product(u, v):  # type: ignore[no-untyped-def]
        prod = u * v if tmp is None else torch.mul(u, v, out=tmp)
        return prod.mean(dims, keepdim=True)

    zero = torch.zeros_like(r)
    wr = w.view(shape) * r if w is not None else r
    Gx = torch.zeros_like(x) if Gx is None else Gx
    m0, m1, m2 = Gx.mean(dims, keepdim=True), mean_of_product(Gx, xh), mean_of_product(Gx, gy)
    del tmp
    Gw_ = Gw.view(shape) if Gw is not None else zero
    Gb_ = Gb.view(shape) if Gb is not None else zero
    q = m2 - a * m0 - b * m1
    c1, c2 = Gw_ - wr * m1, -wr * b
    dgy = torch.addcmul(Gb_ - wr * m0, xh, c1).addcmul_(Gx, wr.expand_as(r))
    dw = (r * M * q).view(-1) if w is not None else None
    dx = torch.addcmul(-r * (c1 * a + c2 * m0), gy, r * c1).addcmul_(Gx, r * c2)
    dx = dx.addcmul_(xh, -r * (c1 * b + c2 * m1 + wr * q))
    return dgy, dx, dw, None, None, None


class _BatchStatNormBackward(torch.autograd.Function):
    """(gy, x, w, mean, invstd) -> (gx, gw, gb) of train-mode BN, with a hand-written double backward.

    Per channel, over the M elements of the batch and spatial positions, with
    x^ = (x - mu) r, r = (var + eps)^(-1/2), a = mean(gy), b = mean(gy x^):
    forward (BN's backward)  gx = w r (gy - a - x^ b),  gw = M b,  gb = M a.
    Its vector-Jacobian product for cotangents (Gx, Gw, Gb), with
    m0 = mean(Gx), m1 = mean(Gx x^), m2 = mean(Gx gy):
      d/dgy = w r (Gx - m0 - x^ m1) + Gw x^ + Gb
      d/dw  = r M (m2 - a m0 - b m1)
      d/dx  = r [c1 gy + c2 Gx - (c1 a + c2 m0) - x^ (c1 b + c2 m1 + w r (m2 - a m0 - b m1))],
              c1 = Gw - w r m1, c2 = -w r b
    (derived by hand; x enters through x^ and through mu and r; tests/engine/test_bn_double_backward.py
    checks it against torch's own double backward and gradgradcheck in float64).
    About 10 elementwise/reduction passes, where torch's generic batchnorm double
    backward is far slower on the CPU (it dominated a batch-mode NIO step on BN networks).
    When a third order is asked for (``create_graph`` in the double backward), the same formula
    runs with the statistics recomputed by differentiable ops, so it is exact, only slower.
    """

    @staticmethod
    def forward(ctx, gy, x, w, mean, invstd, eps):  # type: ignore[override]
        has_w = w is not None
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy, x, w, None, None, mean, invstd, True, eps, [True, has_w, has_w])
        ctx.save_for_backward(gy, x, w, mean, invstd, gw, gb)
        ctx.eps = eps
        return gx, gw, gb

    @staticmethod
    def backward(ctx, Gx, Gw, Gb):  # type: ignore[override]
        gy, x, w, mean, invstd, gw, gb = ctx.saved_tensors
        return _bn_double_backward(gy, x, w, mean, invstd, gw, gb, Gx, Gw, Gb, ctx.eps,
                                   differentiable=torch.is_grad_enabled())


class BatchStatNorm(torch.autograd.Function):
    """Train-mode BatchNorm (batch statistics, no running statistics) with a fast double backward.

    Forward and first backward are torch's own BN kernels (identical values); the
    backward is itself a :class:`_BatchStatNormBackward`, so second-order gradients
    (NIO and GradInit through BN, ``create_graph=True``) use the hand-written formula.
    Not used under torch.func transforms (vmap), where StatBN falls back to ``batch_norm``.
    """

    @staticmethod
    def forward(ctx, x, w, b, eps):  # type: ignore[override]
        y, mean, invstd = torch.ops.aten.native_batch_norm(x, w, b, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, w, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        x, w, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchStatNormBackward.apply(gy, x, w, mean, invstd, ctx.eps)
        return gx, gw, gb, None


class StatBN(nn.Module):
    """BatchNorm replacement with an explicit statistics mode (see module docstring).

    y = (x - mu) / sqrt(var + eps) * weight + bias, mu/var per channel (dim 1),
    var biased (divided by the count, as BN uses for normalization); then the replaced
    layer's own child modules, if it has any (timm's BatchNormAct2d: drop, act).
    """

    def __init__(self, bn: _BatchNorm, mode: str, primitive: bool) -> None:
        super().__init__()
        self.eps = float(bn.eps)
        self.num_features = int(bn.num_features)
        if bn.affine:
            self.weight = bn.weight
            self.bias = bn.bias
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.mode = mode
        self.primitive = primitive
        # the kernels, set once by the gradient plan when it prepares the copy (initscore.grad_plan.configure):
        # per_sample mode: True -> the instance-norm kernel (first order only: the hook route's forward),
        # False -> primitive var_mean (vmap and double backward are exact through it)
        self.instance_kernel = False
        # batch mode: True -> torch's own BN autograd (first order only: no Python autograd.Function per call);
        # False -> BatchStatNorm, whose hand-written double backward NIO/GradInit need
        self.first_order = False
        # True only inside calibrate(): the forward measures and stores the batch statistics
        self.calibrating = False
        # plain attributes, not buffers: functional_call must not swap/restore them
        self.calib_mean: torch.Tensor | None = None
        self.calib_var: torch.Tensor | None = None
        # a BatchNorm subclass with child modules (timm's norm-act layers BatchNormAct2d / SyncBatchNormAct: `drop`,
        # then `act`) applies them to the normalized output in registration order: kept under the same names
        for name, sub in bn.named_children():
            self.add_module(name, sub)

    def _shape(self, x: torch.Tensor) -> list[int]:
        return [1, self.num_features] + [1] * (x.dim() - 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._normalize(x)
        for sub in self._modules.values():
            y = sub(y)
        return y

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise OptionsError(f"BatchNorm input must have a channel dimension, got shape {tuple(x.shape)}")
        shape = self._shape(x)
        if self.calibrating:  # one BN kernel pass gives the output AND the statistics (var_mean is slow on CPU)
            with torch.no_grad():
                y, mean, invstd = torch.ops.aten.native_batch_norm(x, self.weight, self.bias, None, None, True,
                                                                   0.0, self.eps)
            self.calib_mean, self.calib_var = mean, invstd.pow(-2) - self.eps  # biased variance
            return y
        mode = self.mode
        if mode == "calibrated":
            if self.calib_mean is None:
                raise RuntimeError("StatBN in calibrated mode used before calibrate()")
            if not self.primitive:
                return nn.functional.batch_norm(x, self.calib_mean, self.calib_var, self.weight, self.bias,
                                                False, 0.0, self.eps)
            # eval-mode BN is affine: x * a + c with a = weight / sqrt(var + eps), c = bias - mean * a
            a = torch.rsqrt(self.calib_var + self.eps)
            c = -self.calib_mean * a
            if self.weight is not None:
                a, c = a * self.weight, c * self.weight + self.bias
            return x * a.view(shape) + c.view(shape)
        elif mode == "batch":
            if not self.primitive:
                if self.first_order or torch._C._are_functorch_transforms_active():
                    return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
                return BatchStatNorm.apply(x, self.weight, self.bias, self.eps)
            var, mean = torch.var_mean(x, dim=[0] + list(range(2, x.dim())), correction=0, keepdim=True)
        elif mode == "per_sample":
            if x.dim() < 3:
                raise OptionsError("bn='per_sample' needs spatial dimensions (BatchNorm1d on (N, C) input "
                                   "has a single value per sample and channel); use 'calibrated' or 'batch'")
            if self.instance_kernel and not torch._C._are_functorch_transforms_active():
                return nn.functional.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
            var, mean = torch.var_mean(x, dim=list(range(2, x.dim())), correction=0, keepdim=True)
        else:  # pragma: no cover - guarded by check_bn_mode
            raise OptionsError(f"unknown bn mode {mode!r}")
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def check_bn_mode(bn: str | None, default: str) -> str:
    """Resolve ``bn=None`` to ``default`` and reject unknown modes."""
    if bn is None:
        return default
    if bn not in BN_MODES:
        raise OptionsError(f"bn must be one of {list(BN_MODES)} or None, got {bn!r}")
    return bn


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


_CONTAINERS = (dict, OrderedDict, list, set)


def tree_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that SHARES every parameter and buffer tensor.

    Each module object is copied shallowly (its own attribute dict, and its own copy of every
    dict, list and set attribute: parameter, buffer, child and hook dicts, and caches a module
    fills during a forward; everything else shared), children recursively; a module reached
    twice is copied once. Setting attributes, the train/eval flag or replacing
    children on the copy leaves ``model`` untouched (``copy.deepcopy`` with the
    tensors in its memo would do the same by walking every attribute, far slower).
    """
    return _clone_tree(model, {})


def _clone_tree(m: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    """tree_copy's recursion. A module-level function on purpose: a nested recursive closure is a
    reference cycle (function -> its cell -> function) that keeps the memo, and so every copy with its
    tensors, alive until the cyclic garbage collector runs."""
    done = memo.get(id(m))
    if done is not None:
        return done
    c = copy.copy(m)
    memo[id(m)] = c
    own = c.__dict__
    for k, v in own.items():
        if type(v) in _CONTAINERS:
            own[k] = v.copy()
    c._modules = {k: (_clone_tree(v, memo) if v is not None else None) for k, v in m._modules.items()}
    return c


def scoring_copy(model: nn.Module, mode: str, *, primitive: bool) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm replaced by :class:`StatBN`.

    Parameter names are preserved; the caller's model is not modified. The copy SHARES the
    caller's parameter and buffer tensors (:func:`tree_copy`): scoring code passes its own
    tensors through ``functional_call`` and never writes into the copy's (tests/engine check
    the caller's tensors, buffers and train/eval flags are unchanged). Modules that keep a
    parameter-derived tensor between eval-mode forwards drop it around each forward
    (:func:`initscore.mode_caches.refresh_each_forward`).
    """
    net = tree_copy(model)
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, child_name, StatBN(child, mode, primitive))
    net.eval()
    mode_caches.refresh_each_forward(net)
    return net


def stat_layers(net: nn.Module) -> Iterator[StatBN]:
    return (m for m in net.modules() if isinstance(m, StatBN))


def set_first_order(net: nn.Module, first_order: bool = True) -> None:
    """Batch-statistics StatBN layers use torch's BN autograd (first order only) instead of BatchStatNorm's
    double-backward-capable Function. The plan sets it (:func:`initscore.grad_plan.prepare`)."""
    for m in stat_layers(net):
        m.first_order = first_order


def calibrate(net: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> None:
    """Compute and freeze the per-channel mean/biased variance of every StatBN on batch ``x``.

    One no-grad forward in which each layer normalizes with the statistics it just
    measured (so later layers see exactly the train-mode activations of the batch).
    """
    layers = list(stat_layers(net))
    if not layers:
        return
    for m in layers:  # the calibrating forward reads neither the mode nor the kernels
        m.calibrating = True
    try:
        with torch.no_grad():
            torch.func.functional_call(net, params, (x,))
    finally:
        for m in layers:
            m.calibrating = False
