"""NIO: Neural Initialization Optimization (Yang, Wang, Yuan & Lin, NeurIPS 2022, Algorithm 3) and its baselines.

One learnable scalar s_l per parameter tensor (weights, biases, BN affine); the
network is scored at theta_l = s_l * w_l where w_l is the initial tensor. Each
iteration draws a batch and computes, with second-order autograd
(``create_graph=True``) through ``functional_call``:

* ``mode="batch"`` (default): B-GC / B-GN over D sub-batches with overlap r (Eq. 7),
* ``mode="sample"``: the exact sample-wise GC / GN (vmap over per-sample grads),

and g_max (the largest sub-batch / sample gradient norm). Then::

    if g_max > gamma:  step to LOWER GN             (constraint branch)
    else:              step to RAISE GC + GN       (GC + gn_weight * GN; gn_weight=1 default)
    s_l <- min(max(s_l, min_scale), max_scale)   (max_scale None: no upper bound)

with Adam, SGD or ``"rescale_adam"`` (the reference code's optimizer: scale gradients
clipped to +-``grad_clip``, one Adam first moment per branch, a shared second moment;
:mod:`initscore.rescale_adam`) at learning rate ``lr``. ``gamma=None`` means gamma = 2 x the
g_max measured at the first iteration (before any step); the value used is
reported in ``Rectification.gamma``.

Two additions to Algorithm 3, both off by default (``gamma_margin=0``,
``select="last"`` is Algorithm 3 exactly): ``gamma_margin=m`` takes the
constraint branch when g_max > (1 - m) gamma, and ``select="feasible"`` returns
the last iterate whose g_max was within that bound on the batch it was measured on
(``Rectification.returned_iterate``), instead of the last iterate, which
Algorithm 3 returns even when it sits above gamma. g_max varies from batch to
batch, so a point at gamma on the batches NIO sees is above it on others.

A tensor that is all zeros at initialization (typically a bias) cannot be
rescaled; it is listed in ``Rectification.unscalable`` and left unchanged.

BatchNorm: ``bn=`` as in :func:`initscore.scores.gradcosine` (default "batch"
for mode="batch", "calibrated" for mode="sample"). Calibrated statistics are
recomputed on each iteration's batch at the current scales and treated as
constants (no gradient through them).

Held-out scores ``heldout_before`` / ``heldout_after`` are measured by
:func:`initscore.scores.gradcosine` itself, with the same mode, sub-batches,
overlap and BN choice as the rectification, on each held-out batch: gc and gn
are averaged over the batches, g_max is the maximum.

``method="gradinit"`` / ``"metainit"`` run the baselines of
:mod:`initscore.baselines` through the same loop (same scales, optimizer, clamp,
history and held-out measurement); ``method="kaiming"`` returns the input
unchanged (all scales 1).
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from initscore import bn as bnmod
from initscore import grad_plan
from initscore import mode_caches
from initscore.contract import IterationRecord, RectifyOptions, RectifyResult, ScoreOptions, Verification, choices
from initscore.errors import NonFiniteError, OptionsError
from initscore.rescale_adam import RescaleAdam
from initscore.segments import SegmentedNet
from initscore.scores import (
    LossFn,
    batch_splits,
    official_gc,
    official_params,
    resolve_profile,
    check_batch,
    coupled_sample_grads,
    fast_layout,
    gradcosine,
    resolve_options,
    sample_grad_fn,
    subbatch_grads,
    trainable,
)

METHODS = choices(RectifyOptions, "method")
OPTIMIZERS = choices(RectifyOptions, "optimizer")
SELECTS = choices(RectifyOptions, "select")
# the released code's ascent targets (gradcos_initializer.py, opt_target); D = sub-batches, g_d their gradients,
# GC the off-diagonal mean cosine, GV = sum over parameters of the (biased) variance over d of g_d:
#   gc: -GC   gc_gn: -GC - gn_mul sum_d ||g_d||^2   gc_gn_sqrt: -GC - gn_mul sum_d ||g_d||
#   gv: GV    gv_gn: GV - gn_mul sum_d ||g_d||^2    gv_gn_sqrt: GV - gn_mul sum_d ||g_d||
OBJECTIVES = choices(RectifyOptions, "objective")
GAMMA_FACTOR = 2.0  # gamma=None -> GAMMA_FACTOR x initial g_max

Progress = Callable[[int, int, dict[str, Any]], None]
StepFn = Callable[[bool], None]  # step(constrained): one optimizer step on the scales' .grad


@dataclass(frozen=True)
class NioStep:
    """One iteration of :func:`rectify`'s loop, as ``on_step`` receives it.

    gc, gn, g_max: the iterate before the step, measured on this iteration's batch (the record of
    ``Rectification.history``); gamma: the bound itself (None only for a method without one, MetaInit);
    constrained: the branch taken (True: the step lowered GN); scales: a read-only copy of every tensor's
    scale after the step and the clamp (1.0 for unscaled tensors)."""

    iteration: int
    total: int
    gc: float
    gn: float
    g_max: float
    gamma: float | None
    constrained: bool
    scales: Mapping[str, float]


OnStep = Callable[[NioStep], None]


@dataclass(frozen=True)
class Rectification:
    """Result of :func:`rectify`. ``state_dict`` is a new dict of new tensors."""

    method: str
    state_dict: dict[str, Tensor]
    scales: dict[str, float]
    unscalable: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    heldout_before: dict[str, float]
    heldout_after: dict[str, float]
    gamma: float | None
    seconds: float
    gamma_margin: float = 0.0
    select: str = "last"
    returned_iterate: int | None = None
    final: dict[str, Any] | None = None
    fixed: tuple[str, ...] = ()  # non-zero tensors left unscaled by ``scale_tensors``
    verification: dict[str, Any] | None = None  # verify_batches > 0: see :func:`rectify`
    options: RectifyOptions | None = None  # the validated options of the run

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no tensors)."""
        return {
            "method": self.method,
            "scales": dict(self.scales),
            "unscalable": list(self.unscalable),
            "history": [dict(h) for h in self.history],
            "heldout_before": dict(self.heldout_before),
            "heldout_after": dict(self.heldout_after),
            "gamma": self.gamma,
            "seconds": self.seconds,
            "gamma_margin": self.gamma_margin,
            "select": self.select,
            "returned_iterate": self.returned_iterate,
            "final": None if self.final is None else dict(self.final),
            "fixed": list(self.fixed),
            "verification": None if self.verification is None else {
                **self.verification, "checked": [dict(c) for c in self.verification["checked"]]},
        }

    def to_result(self, arch: str, params: int) -> RectifyResult:
        """The job contract's RectifyResult of this rectification (``arch`` and ``params`` name the network)."""
        d = self.to_dict()
        return RectifyResult(
            arch=arch, params=params, **{k: v for k, v in d.items() if k not in ("history", "final", "verification")},
            history=[IterationRecord(**h) for h in d["history"]],
            final=None if d["final"] is None else IterationRecord(**d["final"]),
            verification=None if d["verification"] is None else Verification(**d["verification"]))


# ---------------------------------------------------------------- context
_SCORE_FIELDS = ("mode", "sub_batches", "overlap", "split", "profile", "gn_weight", "objective", "gn_mul")


class Context:
    """Everything an objective needs; ``gamma`` is filled in on the first call when None.

    Args:
        net: the private network (:func:`rectify_prepared`'s ``.net``, or a scoring copy the caller set up).
        loss: loss(logits, targets) -> scalar; None: cross-entropy.
        options: the run's :class:`initscore.contract.RectifyOptions` (mode, sub-batches, overlap, split,
            profile, gn_weight, objective, gn_mul are read from it); None: the defaults. Any of those fields may
            also be given by keyword (applied on top of ``options`` and validated).
        bn_mode: the resolved BatchNorm mode (default: resolved from the options as :func:`rectify` does).
        has_bn: whether the network has BatchNorm (default: whether ``net`` has StatBN layers).
        gamma: the bound the objective tests (None: set from the first batch).
        wrt: the differentiated tensors (None: all).
        prepared: the network with its gradient plan (:func:`rectify_prepared`); None: ``net`` as the caller set
            it up, with the plan's one-pass segment network where it applies.
    """

    def __init__(self, net: nn.Module, loss: LossFn | None = None, options: RectifyOptions | None = None, *,
                 bn_mode: str | None = None, has_bn: bool | None = None, gamma: float | None = None,
                 wrt: tuple[str, ...] | None = None, prepared: grad_plan.Prepared | None = None,
                 extra: dict[str, Any] | None = None, **fields: Any) -> None:
        unknown = set(fields) - set(_SCORE_FIELDS)
        if unknown:
            raise TypeError(f"Context() got unexpected keyword argument(s) {sorted(unknown)}")
        o = options or RectifyOptions()
        if fields.get("objective") == "gc" and fields.get("profile", o.profile) != "official":
            fields.pop("objective")  # the default target: only the official profile names one
        o = options_of(o, fields) if fields else o
        self.options = o
        self.net, self.loss, self.gamma, self.wrt = net, loss, gamma, wrt
        self.overlap, self.split = resolve_profile(o.profile, o.mode, o.overlap, o.split)
        self.overlap = float(self.overlap)
        self.bn_mode = bn_mode if bn_mode is not None else resolve_options(o.mode, o.bn, o.sub_batches, self.overlap,
                                                                            o.profile)
        self.has_bn = has_bn if has_bn is not None else any(True for _ in bnmod.stat_layers(net))
        self.extra: dict[str, Any] = {} if extra is None else extra
        self.prepared = prepared if prepared is not None else grad_plan.wrap(net, grad_plan.decide(
            net, mode=o.mode, bn_mode=self.bn_mode, default_loss=loss is None, order=2))

    # the options' fields the objectives read
    mode = property(lambda self: self.options.mode)
    sub_batches = property(lambda self: self.options.sub_batches)
    profile = property(lambda self: self.options.profile)
    gn_weight = property(lambda self: self.options.gn_weight)
    gn_mul = property(lambda self: self.options.gn_mul)
    objective = property(lambda self: self.options.objective or "gc")  # official profile only

    @property
    def plan(self) -> grad_plan.Plan:
        return self.prepared.plan

    @property
    def coupled(self) -> bool:
        return self.has_bn and self.bn_mode == "batch"

    @property
    def shared(self) -> bool:
        return self.has_bn and self.bn_mode == "shared"

    def tested(self, rec: dict[str, float]) -> float:
        """The quantity compared with gamma: g_max (Algorithm 3) or, in the official profile, the mean
        sub-batch gradient norm GN (the released code's test)."""
        return rec["gn"] if self.profile == "official" else rec["g_max"]

    @property
    def loss_fn(self) -> LossFn:
        return self.loss or nn.functional.cross_entropy

    def segnet(self) -> SegmentedNet | None:
        """The one-pass segment network of batch mode where the plan takes that route, else None (kept in
        ``extra["segnet"]``; a study that sets it to None takes the one-pass-per-segment route)."""
        if "segnet" not in self.extra:
            self.extra["segnet"] = self.prepared.segnet if self.mode == "batch" else None
        return self.extra["segnet"]

    def calibrate(self, params: dict[str, Tensor], x: Tensor) -> None:
        if self.has_bn and self.bn_mode == "calibrated":
            bnmod.calibrate(self.net, {n: p.detach() for n, p in params.items()},
                            fast_layout(x) if self.plan.channels_last else x)

    def calibrate_for_scores(self, params: dict[str, Tensor], x: Tensor) -> None:
        """Calibrate before :func:`stacked_grads`, unless its one-pass segment network measures the statistics."""
        if self.segnet() is None:
            self.calibrate(params, x)


# an objective: (ctx, params, x, y) -> (quantity to minimize, {"gc", "gn", "g_max"}, constrained branch taken)
Objective = Callable[[Context, dict[str, Tensor], Tensor, Tensor], tuple[Tensor, dict[str, float], bool]]


def select_tensors(names: Iterable[str], patterns: Sequence[str] | None) -> tuple[str, ...]:
    """The names a ``scale_tensors`` selection keeps, in order.

    patterns: shell-style patterns (``fnmatch``) on parameter names; a pattern starting with "!"
    excludes. A name is kept when it matches some include pattern (every name, if only exclusions
    are given) and no exclusion. None keeps every name. Every pattern must match some name (a typo
    is an OptionsError, not a silently unscaled network), and the selection must not be empty."""
    names = list(names)
    if patterns is None:
        return tuple(names)
    if isinstance(patterns, str) or not all(isinstance(p, str) and p.strip("!") for p in patterns):
        raise OptionsError(f"scale_tensors must be a list of non-empty name patterns, got {patterns!r}")
    inc = [p for p in patterns if not p.startswith("!")]
    exc = [p[1:] for p in patterns if p.startswith("!")]
    for p in inc + exc:
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise OptionsError(f"scale_tensors pattern {p!r} matches no scalable parameter tensor (they are: {shown})")
    kept = tuple(n for n in names if (not inc or any(fnmatch.fnmatchcase(n, p) for p in inc))
                 and not any(fnmatch.fnmatchcase(n, p) for p in exc))
    if not kept:
        raise OptionsError(f"scale_tensors {list(patterns)!r} selects no parameter tensor")
    return kept


class ScaledParams:
    """theta_l = s_l * w_l with one scalar s_l (leaf tensor) per non-zero parameter tensor.

    ``scale_tensors`` (see :func:`select_tensors`) restricts which tensors get a scale; the others
    are ``fixed`` at their initial values (still differentiated: their gradients count in GC/GN)."""

    def __init__(self, w0: dict[str, Tensor], scale_tensors: Sequence[str] | None = None,
                 min_scales: dict[str, float] | None = None, only: Sequence[str] | None = None) -> None:
        self.w0 = {n: w.detach().clone() for n, w in w0.items()}
        self.unscalable = tuple(n for n, w in self.w0.items() if not bool((w != 0).any()))
        candidates = [n for n in self.w0 if n not in self.unscalable and (only is None or n in only)]
        kept = set(select_tensors(candidates, scale_tensors))
        self.min_scales = dict(min_scales or {})  # per-tensor clamps overriding rectify's min_scale
        self.fixed = tuple(n for n in self.w0 if n not in self.unscalable and n not in kept)
        self.scales = {n: torch.ones((), dtype=w.dtype, device=w.device, requires_grad=True)
                       for n, w in self.w0.items() if n in kept}
        for n in self.w0:  # still differentiated (its gradient counts in GC/GN), never rescaled
            if n not in kept:
                self.w0[n].requires_grad_(True)

    def params(self) -> dict[str, Tensor]:
        return {n: (self.scales[n] * w if n in self.scales else w) for n, w in self.w0.items()}

    @torch.no_grad()
    def clamp(self, min_scale: float, max_scale: float | None = None) -> None:
        """s_l <- min(max(s_l, the tensor's lower bound (``min_scales`` or ``min_scale``)), ``max_scale``)."""
        for n, s in self.scales.items():
            s.clamp_(min=self.min_scales.get(n, min_scale), max=max_scale)

    def values(self) -> dict[str, float]:
        return {n: (float(self.scales[n].detach()) if n in self.scales else 1.0) for n in self.w0}


# ------------------------------------------------------- score terms
def stacked_grads(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor,
                  create_graph: bool) -> dict[str, Tensor]:
    """Per-sample (mode sample) or per-sub-batch (mode batch) gradients, stacked: {name: (n, *shape)}.

    Differentiable w.r.t. ``params`` when ``create_graph``.
    """
    if ctx.mode == "batch":
        segnet = ctx.segnet()
        splits = batch_splits(x.shape[0], ctx.sub_batches, ctx.overlap, ctx.split)
        wrt = tuple(params) if ctx.wrt is None else ctx.wrt
        grads = subbatch_grads(ctx.net, params, x, y, ctx.loss, splits, ctx.coupled, create_graph=create_graph,
                               segnet=segnet, wrt=wrt, shared=ctx.shared,
                               channels_last=ctx.plan.subbatch_layout(create_graph))
        return {n: torch.stack([g[n] for g in grads]) for n in wrt}
    if ctx.coupled:
        return coupled_sample_grads(ctx.net, params, x, y, ctx.loss_fn, range(x.shape[0]))
    fn = ctx.extra.get("sample_fn")
    if fn is None:
        fn = ctx.extra["sample_fn"] = sample_grad_fn(ctx.net, ctx.loss_fn)
    return fn(params, x, y)


def grad_terms(stacked: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Differentiable (GC, norms) of stacked gradients: GC = ||sum_i g_i/||g_i|| ||^2 / n^2.

    Per tensor, the per-sample squared norms are summed in the gradients' dtype (torch's
    CPU/GPU reductions are cascaded: ~1e-7 relative in float32, see tests/engine/test_nio.py),
    then tensors are totalled and everything after is in float64. Casting the whole
    gradient stack to float64 first (and back in the backward) cost ~1x a forward+backward
    per NIO step on ResNet-20 at B=64, for no measurable change. Non-finite entries are
    caught on those squared norms (NaN/inf propagate into them), naming the tensor.
    """
    flat = {n: g.reshape(g.shape[0], -1) for n, g in stacked.items()}
    sqs = {n: torch.linalg.vecdot(f, f).double() for n, f in flat.items()}
    for name, q in sqs.items():
        if not bool(torch.isfinite(q).all()):
            raise NonFiniteError(f"non-finite gradient in parameter tensor {name!r} during rectification",
                                 tensor=name)
    sq = sum(sqs.values())
    norms = sq.clamp_min(1e-300).sqrt()
    n = norms.shape[0]
    # a sample with an exactly zero gradient has no direction: u_i = 0, as in scores.ScoreAccumulator
    # (1/norm of the clamped norm overflows float32 to inf, and inf * 0 = NaN)
    inv = torch.where(sq > 0, 1.0 / norms, torch.zeros_like(norms))
    gc = sum((inv.to(f.dtype) @ f).double().square().sum() for f in flat.values()) / n**2
    return gc, norms


def measure(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, float]:
    """First-order GC/GN/g_max of the current parameters (the quantities NIO optimizes)."""
    ctx.calibrate_for_scores(params, x)
    with torch.enable_grad():
        p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
        stacked = stacked_grads(ctx, p, x, y, create_graph=False)
        gc, norms = grad_terms({n: g.detach() for n, g in stacked.items()})
    if ctx.profile == "official":
        gc = official_gc(float(gc), norms.shape[0], int((norms > 1e-300).sum()))
    return {"gc": float(gc), "gn": float(norms.mean()), "g_max": float(norms.max())}


def grad_variance(stacked: dict[str, Tensor]) -> Tensor:
    """GV = sum over all parameter entries of the biased variance over the n stacked gradients (float64)."""
    return sum(((g - g.mean(0, keepdim=True)).square().mean(0)).sum().double() for g in stacked.values())


def official_objective(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor
                       ) -> tuple[Tensor, dict[str, float], bool]:
    """The released code's step (profile "official"): GN = mean_d ||g_d||; if GN > gamma minimize GN, else
    minimize the ``ctx.objective`` target (:data:`OBJECTIVES`). The record's gc is the off-diagonal GC."""
    ctx.calibrate_for_scores(params, x)
    stacked = stacked_grads(ctx, params, x, y, create_graph=True)
    gc_all, norms = grad_terms(stacked)
    n = norms.shape[0]
    gc = (gc_all * n * n - n) / (n * (n - 1))  # all norms non-zero here (a zero one clamps to 1e-150)
    gn, g_max = norms.mean(), norms.max()
    rec = {"gc": float(gc.detach()), "gn": float(gn.detach()), "g_max": float(g_max.detach())}
    if ctx.gamma is None:
        ctx.gamma = GAMMA_FACTOR * rec["gn"]
    constrained = rec["gn"] > ctx.gamma
    if constrained:
        return gn, rec, True
    target = ctx.objective
    first = -gc if target.startswith("gc") else grad_variance(stacked)
    if target.endswith("_gn"):
        return first - ctx.gn_mul * norms.square().sum(), rec, False
    if target.endswith("_gn_sqrt"):
        return first - ctx.gn_mul * norms.sum(), rec, False
    return first, rec, False


def nio_objective(ctx: Context, params: dict[str, Tensor], x: Tensor, y: Tensor
                  ) -> tuple[Tensor, dict[str, float], bool]:
    """Algorithm 3: objective to MINIMIZE (GN under the constraint, else -(GC + GN)), the record, the branch."""
    ctx.calibrate_for_scores(params, x)
    if ctx.profile == "official":
        return official_objective(ctx, params, x, y)
    stacked = stacked_grads(ctx, params, x, y, create_graph=True)
    gc, norms = grad_terms(stacked)
    gn, g_max = norms.mean(), norms.max()
    gc_v, gn_v, g_max_v = float(gc.detach()), float(gn.detach()), float(g_max.detach())
    if ctx.gamma is None:
        ctx.gamma = GAMMA_FACTOR * g_max_v
    constrained = g_max_v > ctx.gamma
    objective = gn if constrained else -(gc + ctx.gn_weight * gn)
    return objective, {"gc": gc_v, "gn": gn_v, "g_max": g_max_v}, constrained


# --------------------------------------------------------------- data
def _is_single_batch(data: Any) -> bool:
    return (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
            and data[0].dim() >= 1 and data[1].dim() >= 1 and data[0].shape[0] == data[1].shape[0])


def batch_stream(data: Any, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Cycle through ``data``: a TensorData (seeded batches), one (x, y) batch, or an iterable of batches."""
    if hasattr(data, "batches") and hasattr(data, "x") and hasattr(data, "y"):
        for b in data.batches(batch_size, seed):
            yield check_batch(b)
        return
    if _is_single_batch(data):
        b = check_batch(tuple(data))
        while True:
            yield b
    if not isinstance(data, Iterable):
        raise OptionsError("data must be an iterable of (inputs, targets) batches or an initscore.data.TensorData")
    one_shot = iter(data) is data
    cache: list[tuple[Tensor, Tensor]] = []
    source: Iterable[Any] = data
    while True:
        got = False
        for b in source:
            got = True
            b = check_batch(b)
            if one_shot:
                cache.append(b)
            yield b
        if not got:
            raise OptionsError("data yielded no batches")
        if one_shot:
            source = cache
            one_shot = False


def score_options(o: RectifyOptions) -> ScoreOptions:
    """The score options of a rectification: the held-out batches are scored with its mode, sub-batches, overlap,
    split, BN mode and profile."""
    return ScoreOptions(mode=o.mode, sub_batches=o.sub_batches, overlap=o.overlap, bn=o.bn, split=o.split,
                        profile=o.profile)


def heldout_scores(model: nn.Module, state: dict[str, Tensor] | None, heldout: list[Any],
                   options: ScoreOptions | None = None, *, loss: LossFn | None = None,
                   **fields: Any) -> dict[str, float]:
    """Mean gc/gn and max g_max of :func:`gradcosine` over the held-out batches (empty dict if none).

    Args:
        model: the network; with ``state``, a copy of it with that state dict loaded is scored.
        heldout: (x, y) batches.
        options: the score options (mode, sub_batches, overlap, bn, split, profile); None: the defaults.
            Fields may also be given by keyword (applied on top, validated).
        loss: loss(logits, targets) -> scalar; None: cross-entropy.
    """
    o = options or ScoreOptions()
    if fields:
        try:
            o = o.updated(**fields)
        except ValidationError as exc:
            raise _options_error(exc) from None
    if not heldout:
        return {}
    m = model
    if state is not None:
        m = mode_caches.deepcopy(model)
        m.load_state_dict(state)
    res = [gradcosine(m, b, mode=o.mode, sub_batches=o.sub_batches, overlap=o.overlap, bn=o.bn, loss=loss,
                      split=o.split, profile=o.profile) for b in heldout]
    return {"gc": sum(r.gc for r in res) / len(res), "gn": sum(r.gn for r in res) / len(res),
            "g_max": max(r.g_max for r in res)}


def _rectified_state(model: nn.Module, scales: dict[str, float]) -> dict[str, Tensor]:
    m = mode_caches.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n in scales and scales[n] != 1.0:
                p.mul_(scales[n])
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def rectify_prepared(model: nn.Module, bn_mode: str, *, mode: str, method: str = "nio", loss: LossFn | None = None
                     ) -> grad_plan.Prepared:
    """The private network :func:`rectify` optimizes, prepared by the gradient plan (:mod:`initscore.grad_plan`)
    for differentiating through the gradients: second order, third for MetaInit's Hessian-vector product (its
    BatchNorm then runs as primitive ops: torch's batch_norm kernel has no third order)."""
    plan = grad_plan.decide(model, mode=mode, bn_mode=bn_mode, default_loss=loss is None,
                            order=3 if method == "metainit" else 2)
    return grad_plan.prepare(model, plan)


def rectify_net(model: nn.Module, bn_mode: str, *, mode: str, method: str = "nio") -> nn.Module:
    """The network of :func:`rectify_prepared` (default loss)."""
    return rectify_prepared(model, bn_mode, mode=mode, method=method).net


def _optimizer_step(name: str, leaves: list[Tensor], lr: float, grad_clip: float) -> Callable[[bool], None]:
    """step(constrained) of the scale optimizer ``name``; only "rescale_adam" uses the branch (and grad_clip)."""
    if name == "rescale_adam":
        return RescaleAdam(leaves, lr=lr, grad_clip=grad_clip).step
    opt = torch.optim.Adam(leaves, lr=lr) if name == "adam" else torch.optim.SGD(leaves, lr=lr)
    return lambda constrained: opt.step()


# ------------------------------------------------------------ public API
def options_of(options: RectifyOptions | None, overrides: dict[str, Any]) -> RectifyOptions:
    """``options`` (None: the defaults) with keyword ``overrides`` applied, validated by pydantic
    (:meth:`initscore.contract.RectifyOptions.updated`). A name that is not an option is a TypeError, as for
    any unknown keyword; a bad value is an OptionsError naming the field."""
    if options is not None and not isinstance(options, RectifyOptions):
        raise TypeError(f"options must be an initscore.contract.RectifyOptions or None, got {type(options).__name__}")
    unknown = sorted(set(overrides) - set(RectifyOptions.model_fields) | set(overrides) & {"heldout_batches"})
    if unknown:
        hint = ("; heldout_batches is the job driver's: pass heldout=[(x, y), ...]" if "heldout_batches" in unknown
                else f"; the options are {', '.join(f for f in RectifyOptions.model_fields if f != 'heldout_batches')}")
        raise TypeError(f"rectify() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}{hint}")
    try:
        return (options or RectifyOptions()).updated(**overrides)
    except ValidationError as exc:
        raise _options_error(exc) from None


def _options_error(exc: ValidationError) -> OptionsError:
    """The OptionsError naming the field of pydantic's first error."""
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    return OptionsError(f"{where}: {msg}, got {e['input']!r}" if where else msg)


def rectify(model: nn.Module, data: Any, options: RectifyOptions | None = None, *, heldout: list[Any] | None = None,
            batch_size: int = 64, loss: LossFn | None = None, progress: Progress | None = None,
            on_step: OnStep | None = None, objective_fn: Objective | None = None,
            make_step: Callable[[list[Tensor]], StepFn] | None = None, **overrides: Any) -> Rectification:
    """Rectify the initialization of ``model`` by per-tensor scales (NIO, Algorithm 3) or a baseline.

    Args:
        model: the network; it is not modified (the result holds a new state dict).
        data: an iterable (cycled) of (x, y) batches, one (x, y) batch, or an ``initscore.data.TensorData``
            (then ``batch_size`` samples per iteration, drawn with ``options.seed``).
        options: a :class:`initscore.contract.RectifyOptions`, the one declaration of the options (the job
            request's ``options`` is the same model); None: its defaults.
        **overrides: any option by name (``rectify(net, data, iters=30, lr=0.01)``), applied on top of
            ``options`` and validated by pydantic; an unknown name is a TypeError.
        heldout: (x, y) batches scored before and after, by :func:`heldout_scores`.
        batch_size: samples per iteration when ``data`` is a TensorData.
        loss: loss(logits, targets) -> scalar; None: cross-entropy.
        progress: progress(iteration, total, metrics) after every iteration.
        on_step: on_step(:class:`NioStep`) after every iteration's step and clamp: the measured quantities,
            gamma, the branch taken and the scales.
        objective_fn: replaces the method's objective (:func:`nio_objective` for NIO): (ctx, params, x, y) ->
            (quantity to minimize, {"gc", "gn", "g_max"}, constrained); for studies that vary the step.
        make_step: make_step(leaves) -> step(constrained), replacing ``options.optimizer``: called once with the
            scale tensors; step is called after their ``.grad`` is set; for studies that vary the optimizer.

    What the options mean here (their ranges are RectifyOptions'):
    gn_weight: weight w of GN in the unconstrained NIO step, which raises GC + w GN
    (w = 1 is Algorithm 3; w = 0 ascends GC alone under the same g_max <= gamma constraint; on
    ResNet-20 without BN that collapses every scale: one constraint step, whose gradient is
    ~2,600x the GC gradient, dominates the shared Adam moments; research/nio_investigation.md).
    gamma_margin: m in [0, 1); the constraint branch is taken when g_max > (1 - m) gamma, so
    the iterates stay a margin below gamma (g_max varies from batch to batch, and held-out
    batches are not the ones NIO sees). With gamma=None, gamma is set from the first batch
    and that first iteration is decided against gamma itself. ``Rectification.gamma`` is
    gamma, not (1 - m) gamma. m = 0 is Algorithm 3.
    select: which iterate is returned. "last" (Algorithm 3): the scales after the last step.
    "feasible": the last iterate that satisfied the bound in effect ((1 - m) gamma) on the
    batch it was measured on; iterate k = the scales after k steps, measured at iteration
    k + 1 (``history[k]``), and the final iterate on one more batch, without a step
    (``Rectification.final``). If none did, the iterate with the smallest recorded g_max.
    "best" (NIO only): of those feasible iterates, the one with the largest recorded value of the
    ascent objective GC + gn_weight * GN on its own batch -- so a run whose last constraint
    steps overshot downwards (scales shrunk, GN and GC with them) does not return that
    collapsed iterate; no held-out data is looked at. If none was feasible, as for "feasible".
    ``Rectification.returned_iterate`` is the k returned (``iters`` for "last").
    verify_batches: V >= 0 (select "feasible"/"best" only). With V > 0 an iterate counts as within
    the bound only if it is also within gamma itself on V more batches drawn after the last one (the
    same V batches for every iterate, none of them held-out data), by the method's own constraint
    test (NIO: g_max <= gamma; GradInit: ||g|| <= gamma). The margin m steers the iterations below
    gamma because g_max, a maximum over samples, varies from batch to batch; the verification
    checks the bound itself on V x batch_size samples the iterate was not measured on. It certifies
    those samples only: on unseen ones the largest norm can still exceed gamma (research/nio_investigation.md,
    "Follow-up 6"). Candidates are checked lazily in the select rule's order
    ("feasible": latest first; "best": largest objective first) and the first one that passes is
    returned; if none does, every iterate is checked and the one with the smallest g_max over its
    own and the verification batches is returned. ``Rectification.verification`` records V, each
    checked iterate's g_max over the V batches and whether it passed, and ``passed``. MetaInit has
    no bound: nothing to verify (None). V = 0 (default): no verification.
    A record's ``constrained`` is False exactly when its iterate was within the bound.
    optimizer: "adam" (one torch Adam for both branches), "sgd", or "rescale_adam" (NIO's and GradInit's
    reference optimizer, :class:`initscore.rescale_adam.RescaleAdam`: each scale's gradient clipped to
    +-``grad_clip`` (0 = no clipping; used by "rescale_adam" only), separate first moments for the
    constraint and ascent branches, one shared second moment).
    scale_tensors: which parameter tensors get a scale (shell patterns on parameter names, "!" to
    exclude, e.g. ``["fc.weight"]`` or ``["!fc.*"]``; :func:`select_tensors`); the others stay at
    their initial values and are listed in ``Rectification.fixed``. None (default): every non-zero tensor.
    profile: "paper" (default; Algorithm 3 as above) or "official" (the authors' released code,
    ``gradcos/gradcos_initializer.py``; batch mode, method "nio"): GC is the off-diagonal mean over the D
    sub-batches, gradients w.r.t. Conv2d/Linear/LayerNorm weights and biases only, ``bn="shared"`` by
    default, the constraint test is mean_d ||g_d|| > gamma (gamma=None: 2 x the first batch's GN), the
    ascent step minimizes ``objective`` (:data:`OBJECTIVES`, default "gc") with ``gn_mul``, the scaled tensors
    are those whose name contains "weight" (clamped at ``min_scale``) or "bias" (clamped at 0), and the
    optimizer defaults to "rescale_adam". split: :func:`initscore.scores.batch_splits` ("eq7" default of the
    paper profile, "official" of the official one, or "cover"). overlap None: the profile's default (0.6 paper,
    0.0 official). optimizer None: "adam" (paper) or "rescale_adam" (official).

    Returns a :class:`Rectification` (its ``options`` are the validated options; ``to_result`` converts it to
    the job contract's RectifyResult).
    """
    t0 = time.perf_counter()
    o = options_of(options, overrides)
    method, select = o.method, o.select
    overlap, split = resolve_profile(o.profile, o.mode, o.overlap, o.split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size must be a positive integer, got {batch_size!r}")
    for name, fn in (("progress", progress), ("on_step", on_step), ("objective_fn", objective_fn),
                     ("make_step", make_step), ("loss", loss)):
        if fn is not None and not callable(fn):
            raise OptionsError(f"{name} must be a callable or None, got {type(fn).__name__}")
    bn_mode = resolve_options(o.mode, o.bn, o.sub_batches, overlap, o.profile)
    heldout = [check_batch(b) for b in heldout or []]
    scored = score_options(o)
    before = heldout_scores(model, None, heldout, scored, loss=loss)

    prep = rectify_prepared(model, bn_mode, mode=o.mode, method=method, loss=loss)
    net = prep.net
    wrt: tuple[str, ...] | None = None
    if o.profile == "official":
        wrt = official_params(net)
        if not wrt:
            raise OptionsError("profile='official' differentiates Conv2d/Linear/LayerNorm weights and biases only; "
                               "the model has none")
        names = list(trainable(net))
        # the released code's two optimizer groups: names containing "weight" (min_scale) and "bias" (0)
        only = [n for n in names if "weight" in n or "bias" in n]
        scaled = ScaledParams(trainable(net), o.scale_tensors, only=only,
                              min_scales={n: 0.0 for n in names if "bias" in n and "weight" not in n})
    else:
        scaled = ScaledParams(trainable(net), o.scale_tensors)
    if method == "kaiming" or o.iters == 0 or not scaled.scales:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return Rectification(method=method, state_dict=state, scales=scaled.values(), unscalable=scaled.unscalable,
                             fixed=scaled.fixed, history=(), heldout_before=before, heldout_after=dict(before),
                             gamma=o.gamma, seconds=time.perf_counter() - t0, gamma_margin=o.gamma_margin,
                             select=select, returned_iterate=0, options=o)

    if objective_fn is not None:
        objective = objective_fn
    elif method == "nio":
        objective = nio_objective
    else:
        from initscore import baselines

        objective = baselines.OBJECTIVES[method]
    keep = 1.0 - o.gamma_margin
    ctx = Context(net, loss, o, bn_mode=bn_mode, has_bn=bnmod.has_batchnorm(model),
                  gamma=None if o.gamma is None else keep * o.gamma, wrt=wrt, prepared=prep)
    gamma_value = o.gamma
    leaves = list(scaled.scales.values())
    step = make_step(leaves) if make_step is not None else _optimizer_step(o.optimizer, leaves, o.lr, o.grad_clip)
    history: list[dict[str, Any]] = []
    verification: dict[str, Any] | None = None
    snapshots: list[dict[str, float]] = []  # snapshots[k] = scales of iterate k (after k steps), select="feasible"
    stream = batch_stream(data, batch_size, o.seed)

    def evaluate(x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float], bool]:
        nonlocal gamma_value
        out = objective(ctx, scaled.params(), x, y)
        if gamma_value is None and ctx.gamma is not None:  # set by the objective from this first batch
            gamma_value = ctx.gamma
            ctx.gamma = keep * gamma_value
        return out

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(o.seed)
        for it in range(1, o.iters + 1):
            x, y = next(stream)
            if select != "last":
                snapshots.append(scaled.values())
            with torch.enable_grad():
                obj, rec, constrained = evaluate(x, y)
                grads = torch.autograd.grad(obj, leaves, allow_unused=True)
                del obj
            for (name, s), g in zip(scaled.scales.items(), grads):
                g = torch.zeros_like(s) if g is None else g.detach()
                if not bool(torch.isfinite(g)):
                    raise NonFiniteError(f"non-finite gradient of the scale of parameter tensor {name!r}", tensor=name)
                s.grad = g
            step(constrained)
            scaled.clamp(o.min_scale, o.max_scale)
            record = {"it": it, "gc": rec["gc"], "gn": rec["gn"], "g_max": rec["g_max"],
                      "constrained": bool(constrained)}
            history.append(record)
            if on_step is not None:
                on_step(NioStep(iteration=it, total=o.iters, gc=rec["gc"], gn=rec["gn"], g_max=rec["g_max"],
                                gamma=gamma_value, constrained=bool(constrained),
                                scales=MappingProxyType(scaled.values())))
            if progress is not None:
                progress(it, o.iters, dict(record))
        returned, final = o.iters, None
        if select != "last":
            snapshots.append(scaled.values())
            x, y = next(stream)
            with torch.enable_grad():
                obj, rec, constrained = evaluate(x, y)
                del obj
            final = {"it": o.iters + 1, "gc": rec["gc"], "gn": rec["gn"], "g_max": rec["g_max"],
                     "constrained": bool(constrained)}
            measured = list(history) + [final]  # measured[k] = the record of iterate k
            ok = [k for k, h in enumerate(measured) if not h["constrained"]]
            if select == "best":  # the latest of equals first
                ok.sort(key=lambda k: (measured[k]["gc"] + o.gn_weight * measured[k]["gn"], k), reverse=True)
            else:
                ok.reverse()
            if o.verify_batches and method != "metainit":
                vbatches = [next(stream) for _ in range(o.verify_batches)]
                returned, verification = _verified_choice(
                    ok, measured, lambda k: _verify(evaluate, ctx, gamma_value, scaled, snapshots[k], vbatches,
                                                    first_order=method == "nio"),
                    o.verify_batches)
            elif not ok:
                returned = min(range(len(measured)), key=lambda k: measured[k]["g_max"])
            else:
                returned = ok[0]
    scales = snapshots[returned] if select != "last" else scaled.values()
    state = _rectified_state(model, scales)
    after = heldout_scores(model, state, heldout, scored, loss=loss)
    return Rectification(method=method, state_dict=state, scales=scales, unscalable=scaled.unscalable,
                         fixed=scaled.fixed, history=tuple(history), heldout_before=before, heldout_after=after,
                         gamma=gamma_value, seconds=time.perf_counter() - t0, gamma_margin=o.gamma_margin,
                         select=select, returned_iterate=returned, final=final, verification=verification, options=o)


def _verify(evaluate: Callable[[Tensor, Tensor], tuple[Tensor, dict[str, float], bool]], ctx: Context,
            gamma: float | None, scaled: ScaledParams, scales: dict[str, float],
            batches: list[tuple[Tensor, Tensor]], first_order: bool = False) -> dict[str, Any]:
    """Iterate ``scales`` under the method's own constraint test against ``gamma`` itself (not the
    margined bound the iterations step against) on each verification batch: {"g_max": max over the
    batches, "passed": no batch triggered the constraint}. ``first_order``: the test is g_max > gamma
    (NIO's), read from :func:`measure` instead of the method's objective, which would build the
    second-order graph of its ascent step (GradInit's test needs its objective). The optimizer's
    scales and the context's bound are restored afterwards."""
    saved = {n: s.detach().clone() for n, s in scaled.scales.items()}
    g_max, passed, bound = 0.0, True, ctx.gamma
    ctx.gamma = gamma
    try:
        with torch.no_grad():
            for n, s in scaled.scales.items():
                s.fill_(scales[n])
        for x, y in batches:
            if first_order:  # NIO's test reads g_max only: no second-order graph
                rec = measure(ctx, scaled.params(), x, y)
                constrained = gamma is not None and ctx.tested(rec) > gamma
            else:
                with torch.enable_grad():
                    obj, rec, constrained = evaluate(x, y)
                    del obj
            g_max, passed = max(g_max, rec["g_max"]), passed and not constrained
    finally:
        ctx.gamma = bound
        with torch.no_grad():
            for n, s in scaled.scales.items():
                s.copy_(saved[n])
    return {"g_max": g_max, "passed": passed}


def _verified_choice(candidates: list[int], measured: list[dict[str, Any]], check: Callable[[int], dict[str, Any]],
                     n_batches: int) -> tuple[int, dict[str, Any]]:
    """The first of ``candidates`` (iterates within the bound on their own batch, in the select rule's
    order) that also passes ``check`` on the verification batches; if none does, the iterate with the
    smallest g_max over its own and the verification batches (every iterate is then checked)."""
    checked: dict[int, dict[str, Any]] = {}
    returned = next((k for k in candidates if checked.setdefault(k, check(k))["passed"]), None)
    passed = returned is not None
    if not passed:
        for k in range(len(measured)):
            if k not in checked:
                checked[k] = check(k)
        returned = min(checked, key=lambda k: (max(measured[k]["g_max"], checked[k]["g_max"]), -k))
    return returned, {"batches": n_batches, "passed": passed,
                      "checked": [{"iterate": i, **c} for i, c in checked.items()]}


def apply(model: nn.Module, rect: Rectification) -> nn.Module:
    """Load the rectified weights into ``model`` (in place) and return it."""
    model.load_state_dict(rect.state_dict)
    return model
