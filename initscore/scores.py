"""GradCosine (GC) and gradient norm (GN) of a network at its initialization.

Source: Yang, Wang, Yuan & Lin, "Towards Theoretically Inspired Neural Initialization
Optimization", NeurIPS 2022, Algorithm 1 (sample-wise) and Algorithm 2 / Eq. 7
(batch relaxation).

Sample-wise (``mode="sample"``, exact). With g_i the gradient of the loss of
sample i w.r.t. all trainable parameters and u_i = g_i / ||g_i||::

    GC = 1/B^2 sum_{i,j} cos(g_i, g_j)            (i = j included, Alg. 1 line 6)
       = || sum_i u_i ||^2 / B^2                  (no B x B matrix needed)
    GN = 1/B sum_i ||g_i||,  g_max = max_i ||g_i||,  g_min = min_i ||g_i||

Per-sample gradients come, for the default loss with ``bn="per_sample"`` on networks made of
Conv2d/Linear/BatchNorm layers, from one batched backward with layer hooks
(:mod:`initscore.hook_grads`), otherwise from ``torch.func`` (``vmap(grad(functional_call))``),
over chunks of samples; only the running sum of unit vectors (float64) and the norms are kept,
so memory is one chunk of per-sample gradients plus two parameter-sized float64 vectors. A
sample whose gradient is exactly zero has no direction: its u_i is taken as 0 (it contributes
cosine 0).

Per-layer breakdown (paper Fig. 3 (a)/(c)), per parameter tensor l: the same
identity on that tensor's slices g_i^l, ``gc = ||sum_i g_i^l/||g_i^l|| ||^2 / B^2``,
``norm_ratio = max_i ||g_i^l|| / min_i ||g_i^l||`` and ``gn = mean_i ||g_i^l||``.

Batch relaxation (``mode="batch"``): D sub-batches of N = ceil(B / (D - r))
samples, sub-batch d (1-based) starting at round(N (d-1)(1-r)) (Eq. 7), the last
clipped to B; the same formulas over the D sub-batch gradients (each the gradient
of the sub-batch's mean loss). ``split="cover"`` / ``"official"`` cut the batch otherwise
(:func:`batch_splits`).

``profile="official"`` (batch mode): the definitions of the authors' released code
(HarborYuan/GradCosine): GC = mean of the D(D-1) off-diagonal cosines, the gradients of
Conv2d/Linear/LayerNorm weights and biases only, its slicing, and BatchNorm with the statistics
of the whole batch shared by all sub-batches (``bn="shared"``); docs/engine.md lists every difference.

BatchNorm: see :mod:`initscore.bn` (``bn="batch" | "calibrated" | "per_sample"``).
The caller's model is never modified: scoring runs on a private copy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap

from initscore import bn as bnmod
from initscore import grad_plan, hook_grads
from initscore.errors import NonFiniteError, OptionsError, ResourceError, is_out_of_memory
from initscore.segments import SegmentedNet

LossFn = Callable[[Tensor, Tensor], Tensor]
MODES = ("sample", "batch")
CHUNK_BUDGET_BYTES = 1 << 30  # per-sample gradient stack budget when chunk_size=None


@dataclass(frozen=True)
class LayerScore:
    """Scores of one parameter tensor (paper Fig. 3 (a)/(c))."""

    name: str
    numel: int
    gc: float
    norm_ratio: float | None  # max/min of this tensor's per-sample gradient norms; None if min == 0
    gn: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GradScores:
    """GradCosine/GradNorm of one batch. ``n`` = samples (sample mode) or sub-batches (batch mode)."""

    gc: float
    gn: float
    g_max: float
    g_min: float
    n: int
    mode: str
    bn: str | None
    layers: tuple[LayerScore, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [layer.to_dict() for layer in self.layers]
        return d


# ------------------------------------------------------------------ helpers
def default_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy."""
    return nn.functional.cross_entropy(logits, targets)


SPLITS = ("eq7", "cover", "official")
PROFILES = ("paper", "official")
# batch-mode overlap r when none is given (gradcosine, rectify, the job contract and the CLI agree):
# the paper profile's 0.6 (NIO's CIFAR setting, rectify's long-standing default); the official profile's 0.0
# (the default of the released code's initializer)
DEFAULT_OVERLAP = {"paper": 0.6, "official": 0.0}
DEFAULT_SPLIT = {"paper": "eq7", "official": "official"}
OFFICIAL_LAYERS = (nn.Conv2d, nn.Linear, nn.LayerNorm)


def _split_eq7(B: int, D: int, r: float) -> list[tuple[int, int]]:
    N = math.ceil(B / (D - r))
    return [(int(round(N * (d - 1) * (1 - r))), min(int(round(N * (d - 1) * (1 - r))) + N, B)) for d in range(1, D + 1)]


def _split_cover(B: int, D: int, r: float) -> list[tuple[int, int]]:
    N = min(B, math.ceil(B / (D - (D - 1) * r)))
    starts = [int(round((d - 1) * (B - N) / (D - 1))) if D > 1 else 0 for d in range(1, D + 1)]
    return [(s0, s0 + N) for s0 in starts]


def _split_official(B: int, D: int, r: float) -> list[tuple[int, int]]:
    L = int(B / D)
    out = []
    for i in range(D):
        start = 0 if i == 0 else int((1 - r) * L * i)
        end = B if i == D - 1 else int((1 + r) * L * (i + 1))
        out.append((start, min(end, B)))
    return out


def batch_splits(B: int, D: int, r: float, split: str = "eq7") -> list[tuple[int, int]]:
    """0-based [start, end) of the D sub-batches of batch mode.

    ``split="eq7"`` (the paper's Eq. 7): N = ceil(B / (D - r)); sub-batch d = 1..D starts at
    round(N (d-1)(1-r)) and holds N samples, clipped to B. Followed literally: for D > 2 and r > 0 the
    sub-batches can end before B (B=100, D=4, r=0.5 -> the last ends at 73; B=64, D=4, r=0.2 -> 58).
    Python's round() is used (half to even).

    ``split="cover"``: D sub-batches of equal length N = ceil(B / (D - (D-1) r)) (consecutive ones
    share about r N samples), the first starting at 0 and the last ending at B, starts at
    round((d-1)(B - N)/(D - 1)): every sample is used. For D = 2 this is Eq. 7 up to rounding
    (B=128, r=0.6: [(0, 92), (36, 128)] against Eq. 7's [(0, 92), (37, 128)]).

    ``split="official"``: the slicing of the authors' released code (``gradcos/gradcos_initializer.py``
    in HarborYuan/GradCosine, ``batch_settings``), restated: L = int(B / D); slice i = 0..D-1 is
    [int((1 - r) L i), int((1 + r) L (i + 1))), the first from 0 and the last to B. Slices are of
    unequal length (B=64, D=4, r=0.2: [(0, 19), (12, 38), (25, 57), (38, 64)]).

    Raises OptionsError for D < 1, r outside [0, 1), B < D, an unknown split or an empty sub-batch.
    """
    if isinstance(B, bool) or not isinstance(B, int) or B < 1:
        raise OptionsError(f"batch size must be a positive integer, got {B!r}")
    if isinstance(D, bool) or not isinstance(D, int) or D < 1:
        raise OptionsError(f"sub_batches must be a positive integer, got {D!r}")
    if not (isinstance(r, (int, float)) and 0.0 <= float(r) < 1.0):
        raise OptionsError(f"overlap must be in [0, 1), got {r!r}")
    if split not in SPLITS:
        raise OptionsError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if D > B:
        raise OptionsError(f"sub_batches={D} is more than the {B} samples of the batch")
    out = {"eq7": _split_eq7, "cover": _split_cover, "official": _split_official}[split](B, D, float(r))
    for d, (start, end) in enumerate(out, 1):
        if start >= end:
            raise OptionsError(f"sub-batch {d} of {D} is empty for B={B}, overlap={r}; use fewer sub-batches")
    return out


def official_params(net: nn.Module) -> tuple[str, ...]:
    """Names of the parameters the released code differentiates (its ``get_ordered_params``): the weight and
    bias of every Conv2d, Linear and LayerNorm module (subclasses included), in module order."""
    names: list[str] = []
    for mname, m in net.named_modules():
        if isinstance(m, OFFICIAL_LAYERS):
            for pname in ("weight", "bias"):
                p = getattr(m, pname, None)
                if isinstance(p, nn.Parameter) and p.requires_grad:
                    names.append(f"{mname}.{pname}" if mname else pname)
    return tuple(names)


def check_batch(batch: Any) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise OptionsError("batch must be a pair (inputs, targets) of tensors")
    x, y = batch
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise OptionsError("batch must be a pair (inputs, targets) of tensors")
    if x.dim() < 1 or x.shape[0] < 1:
        raise OptionsError(f"inputs must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise OptionsError(f"inputs ({x.shape[0]}) and targets ({y.shape[0]}) have different batch sizes")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise NonFiniteError("the inputs contain NaN or inf", tensor=None)
    return x, y


def fast_layout(x: Tensor) -> Tensor:
    """Image batches (N, C, H, W) on the CPU in channels-last memory layout; anything else unchanged.

    Same values, and every convolution after it then runs in oneDNN's channels-last kernels (the
    layout follows the input through the network), which are faster on the CPU. Applied where the
    gradient plan says so (:attr:`initscore.grad_plan.Plan.channels_last`): the sub-batch gradients of batch
    mode (:func:`subbatch_grads`, NIO outside the segmented route) and the BN calibration forward; not in
    sample mode, whose vmapped per-sample convolutions it makes slower, not on accelerators, where the
    better layout depends on the device and dtype, and not on the plain path. bench/engine_ab.py measures it.
    """
    if x.dim() == 4 and x.device.type == "cpu" and not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """Trainable parameters by name (detached views of the model's own tensors)."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise OptionsError("the model has no trainable parameters")
    return params


def check_finite(grads: dict[str, Tensor], sq: dict[str, Tensor] | None = None) -> None:
    """Raise NonFiniteError naming the first parameter tensor with a NaN/inf gradient."""
    for name, g in grads.items():
        ok = bool(torch.isfinite(sq[name]).all()) if sq is not None else bool(torch.isfinite(g).all())
        if not ok:
            raise NonFiniteError(
                f"non-finite gradient in parameter tensor {name!r}; the initialization or the inputs overflow "
                "(try smaller input values or a different init)", tensor=name)


# ---------------------------------------------------------- accumulation
_NORM_CHUNK = 1 << 18  # elements converted to float64 at a time


def _row_sq_norms64(f: Tensor) -> Tensor:
    """Squared L2 norm of every row of a 2-D tensor, accumulated in float64.

    Lower-precision rows are converted to float64 a few rows at a time (2**18 elements), so no float64 copy
    of a whole per-sample gradient stack is ever allocated."""
    if f.dtype == torch.float64 or f.numel() <= _NORM_CHUNK:
        return torch.linalg.vector_norm(f, dim=1, dtype=torch.float64).square()
    rows = max(1, _NORM_CHUNK // max(1, f.shape[1]))
    return torch.cat([torch.linalg.vector_norm(c.double(), dim=1).square() for c in f.split(rows)])


class ScoreAccumulator:
    """Streams stacks of per-sample (or per-sub-batch) gradients into GC/GN by the unit-vector identity.

    Keeps, per tensor, sum_i g_i^l/||g_i|| and sum_i g_i^l/||g_i^l|| (float64) and
    all norms (float64). Memory: 2 x parameters + O(B x tensors).
    """

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.names = list(params)
        self.numel = {n: p.numel() for n, p in params.items()}
        self.u_all = {n: torch.zeros(p.numel(), dtype=torch.float64, device=p.device) for n, p in params.items()}
        self.u_layer = {n: torch.zeros(p.numel(), dtype=torch.float64, device=p.device) for n, p in params.items()}
        self.norms: list[Tensor] = []
        self.layer_norms: dict[str, list[Tensor]] = {n: [] for n in params}
        self.count = 0

    @torch.no_grad()
    def add(self, grads: dict[str, Tensor]) -> None:
        flat = {n: grads[n].reshape(grads[n].shape[0], -1) for n in self.names}
        sq = {n: _row_sq_norms64(f) for n, f in flat.items()}
        check_finite(flat, sq)
        total = torch.stack(list(sq.values())).sum(0)
        norm = total.sqrt()
        inv = torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))
        for n, f in flat.items():
            ln = sq[n].sqrt()
            linv = torch.where(ln > 0, 1.0 / ln, torch.zeros_like(ln))
            if f.dtype == torch.float64:
                self.u_all[n] += inv @ f
                self.u_layer[n] += linv @ f
            else:
                self.u_all[n] += (inv.to(f.dtype) @ f).double()
                self.u_layer[n] += (linv.to(f.dtype) @ f).double()
            self.layer_norms[n].append(ln)
        self.norms.append(norm)
        self.count += norm.shape[0]

    def result(self, mode: str, bn: str | None, offdiag: bool = False) -> GradScores:
        """``offdiag``: GC as the mean of the B(B-1) cosines i != j (the released code's), not all B^2 pairs."""
        B = self.count
        norms = torch.cat(self.norms)
        gc = sum(float(u.square().sum()) for u in self.u_all.values()) / B**2
        if offdiag:
            gc = official_gc(gc, B, int((norms > 0).sum()))
        layers = []
        for n in self.names:
            ln = torch.cat(self.layer_norms[n])
            lo, hi = float(ln.min()), float(ln.max())
            lgc = float(self.u_layer[n].square().sum()) / B**2
            if offdiag:
                lgc = official_gc(lgc, B, int((ln > 0).sum()))
            layers.append(LayerScore(
                name=n, numel=self.numel[n], gc=lgc,
                norm_ratio=(hi / lo) if lo > 0 else None, gn=float(ln.mean())))
        return GradScores(gc=gc, gn=float(norms.mean()), g_max=float(norms.max()), g_min=float(norms.min()),
                          n=B, mode=mode, bn=bn, layers=tuple(layers))


# ------------------------------------------------------- per-sample grads
def _one_sample_loss(net: nn.Module, loss_fn: LossFn) -> Callable[..., Tensor]:
    def f(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(net, params, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))
    return f


def sample_grad_fn(net: nn.Module, loss_fn: LossFn) -> Callable[..., dict[str, Tensor]]:
    """vmap(grad) over samples for sample-independent networks: (params, x, y) -> {name: (c, *shape)}.

    Differentiable w.r.t. ``params`` by ordinary autograd (used by NIO sample mode).
    """
    return vmap(grad(_one_sample_loss(net, loss_fn)), in_dims=(None, 0, 0))


def coupled_sample_grads(net: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, loss_fn: LossFn,
                         rows: Sequence[int]) -> dict[str, Tensor]:
    """Per-sample gradients when samples interact (BN batch statistics): d loss_i / d params, i in rows.

    One forward of the whole batch; the per-sample losses' vector-Jacobian products
    with one-hot cotangents are batched by vmap.
    """
    def losses(p: dict[str, Tensor]) -> Tensor:
        out = functional_call(net, p, (x,))
        return vmap(lambda o, t: loss_fn(o.unsqueeze(0), t.unsqueeze(0)))(out, y)

    values, vjp_fn = vjp(losses, params)
    eye = torch.zeros(len(rows), values.shape[0], dtype=values.dtype, device=values.device)
    eye[torch.arange(len(rows)), torch.as_tensor(list(rows))] = 1.0
    (g,) = vmap(vjp_fn)(eye)
    return g


def _auto_chunk(params: dict[str, Tensor], B: int) -> int:
    per_sample = sum(p.numel() * p.element_size() for p in params.values())
    return max(1, min(B, CHUNK_BUDGET_BYTES // max(1, 3 * per_sample)))


# ------------------------------------------------------- sub-batch grads
def subbatch_grads(net: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, loss_fn: LossFn | None,
                   splits: list[tuple[int, int]], coupled: bool, create_graph: bool = False,
                   segnet: SegmentedNet | None = None, wrt: Sequence[str] | None = None,
                   shared: bool = False, channels_last: bool = False) -> list[dict[str, Tensor]]:
    """Gradients of the mean loss of each sub-batch [s, e).

    If the samples are independent (``coupled=False``) and the loss is the default
    cross-entropy, the batch is cut at every sub-batch boundary into disjoint
    segments, the gradient of each segment's summed loss is taken, and a sub-batch
    gradient is the sum of its segments' divided by its size. That is exact and
    costs one pass over B samples instead of sum_d N_d. With ``segnet`` (see
    :mod:`initscore.segments`; calibrated BN statistics are then measured in its
    forward) all segments come from one forward and one backward; without it, from
    one forward/backward per segment.

    ``shared=True`` (``bn="shared"``, the released code's BN handling): ONE forward of the whole batch
    (BatchNorm normalizing with the statistics of all B samples), then the gradient of each sub-batch's
    mean loss, taken from that one graph, so it flows through the shared batch statistics.
    ``wrt``: the names differentiated (default: every entry of ``params``); the others are inputs only.
    ``channels_last``: run the forwards on :func:`fast_layout` of ``x`` (the plan's
    :meth:`initscore.grad_plan.Plan.subbatch_layout`).
    """
    names = list(params) if wrt is None else list(wrt)
    tensors = [params[n] for n in names]
    if channels_last:
        x = fast_layout(x)

    def _grad(loss: Tensor, retain: bool = False) -> dict[str, Tensor]:
        gs = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True,
                                 retain_graph=retain or create_graph)
        return {n: (g if g is not None else torch.zeros_like(t)) for n, g, t in zip(names, gs, tensors)}

    if shared:
        fn = loss_fn or default_loss
        out = functional_call(net, params, (x,))
        return [_grad(fn(out[s:e], y[s:e]), retain=k < len(splits) - 1) for k, (s, e) in enumerate(splits)]

    if not coupled and loss_fn is None:
        cuts = sorted({s for s, _ in splits} | {e for _, e in splits})
        segs = list(zip(cuts[:-1], cuts[1:]))
        if segnet is not None:  # all B rows go through (calibrated statistics are those of the whole batch)
            cuts = sorted(set(cuts) | {0, x.shape[0]})
            segs = list(zip(cuts[:-1], cuts[1:]))
            fused = segnet.segment_grads(params, x, y, [e - s for s, e in segs], create_graph)
            seg_grads = {k: {n: g[n] for n in names} for k, g in zip(segs, fused)}
        else:
            seg_grads = {}
            for s, e in segs:
                out = functional_call(net, params, (x[s:e],))
                seg_grads[(s, e)] = _grad(nn.functional.cross_entropy(out, y[s:e], reduction="sum"))
        result = []
        for s, e in splits:
            parts = [seg_grads[k] for k in segs if k[0] >= s and k[1] <= e]
            result.append({n: sum(p[n] for p in parts) / (e - s) for n in names})
        return result
    fn = loss_fn or default_loss
    result = []
    for s, e in splits:
        out = functional_call(net, params, (x[s:e],))
        result.append(_grad(fn(out, y[s:e])))
    return result


# ------------------------------------------------------------ public API
def resolve_profile(profile: str, mode: str, overlap: float | None, split: str | None) -> tuple[float, str]:
    """(overlap, split) with the profile's defaults filled in; OptionsError for an unknown profile or split,
    or the official profile outside batch mode (the released code has no sample-wise mode)."""
    if profile not in PROFILES:
        raise OptionsError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if profile == "official" and mode != "batch":
        raise OptionsError("profile='official' (the released code's definitions) exists in batch mode only; "
                           "use mode='batch'")
    if split is not None and split not in SPLITS:
        raise OptionsError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return (DEFAULT_OVERLAP[profile] if overlap is None else overlap), (split or DEFAULT_SPLIT[profile])


def resolve_options(mode: str, bn: str | None, sub_batches: int, overlap: float, profile: str = "paper") -> str:
    """The BN mode; checks mode, sub_batches, overlap. ``bn="shared"`` (batch mode only): one forward of the
    whole batch with its batch statistics, each sub-batch's gradient through them (the released code's BN);
    it is the official profile's default in batch mode."""
    if mode not in MODES:
        raise OptionsError(f"mode must be 'sample' or 'batch', got {mode!r}")
    if isinstance(sub_batches, bool) or not isinstance(sub_batches, int) or sub_batches < 2:
        raise OptionsError(f"sub_batches must be an integer >= 2, got {sub_batches!r}")
    if not (isinstance(overlap, (int, float)) and 0.0 <= float(overlap) < 1.0):
        raise OptionsError(f"overlap must be in [0, 1), got {overlap!r}")
    if bn == "shared" or (bn is None and profile == "official"):
        if mode != "batch":
            raise OptionsError("bn='shared' is a batch-mode option (in sample mode, bn='batch' already shares the "
                               "statistics of the whole batch)")
        return "shared"
    return bnmod.check_bn_mode(bn, "calibrated" if mode == "sample" else "batch")


def official_gc(gc_all_pairs: float, n: int, nonzero: int) -> float:
    """The released code's GC, the mean of the n(n-1) off-diagonal cosines, from the all-pairs GC
    (Alg. 1, diagonal included): (n^2 GC - #nonzero) / (n (n - 1)); a zero gradient has cosine 0 here."""
    return (gc_all_pairs * n * n - nonzero) / (n * (n - 1))


def gradcosine(model: nn.Module, batch: tuple[Tensor, Tensor], *, mode: str = "sample", sub_batches: int = 2,
               overlap: float | None = None, loss: LossFn | None = None, bn: str | None = None,
               chunk_size: int | None = None, split: str | None = None, profile: str = "paper") -> GradScores:
    """GradCosine and gradient norm of ``model`` on ``batch`` (see the module docstring for the formulas).

    mode: "sample" (exact, Alg. 1) or "batch" (sub-batch relaxation with ``sub_batches``
    D and ``overlap`` r; None = the profile's default, 0.6 for "paper", 0.0 for "official").
    split: how batch mode cuts the batch (:func:`batch_splits`): "eq7" (the paper's formula, default of the
    paper profile), "cover" (equal sub-batches from 0 to B) or "official" (the released code's slicing,
    default of the official profile). loss: ``loss(logits, targets) -> mean scalar`` (default
    cross-entropy). bn: None (= "calibrated" for sample mode, "batch" for batch mode, "shared" for the
    official profile), "batch", "calibrated", "per_sample" or "shared" (batch mode: one forward of the
    whole batch, every sub-batch's gradient through its shared statistics). chunk_size: samples per vmap
    call in sample mode (None: automatic, halved on out-of-memory).
    profile: "paper" (Yang et al. 2022: GC over all D^2 pairs, i = j included, every trainable tensor) or
    "official" (the authors' released code, batch mode only: GC = the mean of the D(D-1) off-diagonal
    cosines, gradients w.r.t. the weights and biases of Conv2d/Linear/LayerNorm modules only; GN, g_max
    and the per-layer rows over those tensors). docs/engine.md lists every difference.
    """
    overlap, split = resolve_profile(profile, mode, overlap, split)
    bn_mode = resolve_options(mode, bn, sub_batches, overlap, profile)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise OptionsError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if loss is not None and not callable(loss):
        raise OptionsError("loss must be a callable loss(logits, targets) -> scalar")
    x, y = check_batch(batch)
    has_bn = bnmod.has_batchnorm(model)
    prep = grad_plan.prepare(model, grad_plan.decide(model, mode=mode, bn_mode=bn_mode, default_loss=loss is None,
                                                     order=1, device=x.device))
    net, plan, segnet = prep.net, prep.plan, prep.segnet
    params = trainable(net)
    wrt = official_params(net) if profile == "official" else tuple(params)
    if not wrt:
        raise OptionsError("profile='official' differentiates Conv2d/Linear/LayerNorm weights and biases only; "
                           "the model has none")
    report_bn = bn_mode if has_bn else None
    coupled = plan.per_sample == "coupled"
    if has_bn and bn_mode == "calibrated" and segnet is None:  # a no-grad forward (the segment route measures them)
        bnmod.calibrate(net, params, fast_layout(x) if plan.channels_last else x)
    B = x.shape[0]
    acc = ScoreAccumulator({n: params[n] for n in wrt})
    if mode == "batch":
        splits = batch_splits(B, sub_batches, float(overlap), split)
        with torch.enable_grad():
            p = {n: t.requires_grad_(True) for n, t in ((n, t.detach()) for n, t in params.items())}
            grads = subbatch_grads(net, p, x, y, loss, splits, has_bn and bn_mode == "batch", segnet=segnet, wrt=wrt,
                                   shared=plan.shared, channels_last=plan.subbatch_layout(False))
        acc.add({n: torch.stack([g[n] for g in grads]) for n in wrt})
        return acc.result("batch", report_bn, offdiag=profile == "official")

    loss_fn = loss or default_loss
    chunk = min(chunk_size or _auto_chunk(params, B), B)
    # the plan's route: layer hooks (default loss, per-sample BN; same numbers) or vmap
    fn = None if coupled else ((hook_grads.build(net, params) if plan.per_sample == "hooks" else None)
                               or sample_grad_fn(net, loss_fn))
    start = 0
    while start < B:
        end = min(start + chunk, B)
        try:
            if coupled:
                g = coupled_sample_grads(net, params, x, y, loss_fn, range(start, end))
            else:
                g = fn(params, x[start:end], y[start:end])
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            if chunk == 1:
                raise ResourceError(f"out of memory computing one per-sample gradient; use mode='batch' "
                                    f"or a smaller model/input") from None
            chunk = max(1, chunk // 2)
            continue
        acc.add(g)
        del g
        start = end
    return acc.result("sample", report_bn)
