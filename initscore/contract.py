"""The request/result contract shared by engine, service, worker and client.

Pydantic v2, torch-free. A job request is a discriminated union on `kind`:
`score`, `rectify`, `batch` (many model specs against one data ref, for NAS
sweeps), `propagation` and `search` (the k best of many architectures by one zero-cost score). Results are plain JSON-able pydantic models.

Limits that depend on deployment (batch size, iterations, parameter cap,
allowed dataset roots) are NOT enforced here but by the service settings;
here only the intrinsic ranges are checked (finite numbers, 0 <= overlap < 1, ...) and the
rules across a request's fields (``request_problems``), so library, CLI and API apply the same ones.
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from typing_extensions import Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

ENGINE_VERSION = "0.1.2"

JsonScalar = Union[bool, int, float, str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def choices(model: type[BaseModel], field: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field of ``model`` allows (None left out), in declaration order."""
    found: list[Any] = []
    todo = [model.model_fields[field].annotation]
    while todo:
        t = todo.pop(0)
        if get_origin(t) is Literal:
            found.extend(get_args(t))
        else:
            todo.extend(get_args(t))
    return tuple(v for v in found if v is not None)


class _Options(_Model):
    """A job's options: the one declaration its library function, CLI flags and request share."""

    def updated(self, **overrides: Any) -> Self:
        """A copy with ``overrides`` applied and every field validated again, strictly (Python types as given:
        ``True`` is not an int, ``"2"`` is not a number; a tuple stands for a list). Defaults derived from other
        fields (RectifyOptions.optimizer from the profile) are derived again unless they were set explicitly.
        Raises pydantic.ValidationError, whose errors name the field (an unknown name: "extra_forbidden")."""
        if not overrides:
            return self
        given = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
        return type(self).model_validate({**self.model_dump(exclude_unset=True), **given}, strict=True)


# ---------------------------------------------------------------- inputs
class ModelSpec(_Model):
    """A registered architecture and its scalar arguments, e.g. {"arch": "resnet20", "args": {"bn": false}}."""

    arch: str = Field(min_length=1, max_length=200)
    args: dict[str, JsonScalar] = Field(default_factory=dict, max_length=64)


DataKind = Literal["cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder", "tensors", "synthetic"]


class DataRef(_Model):
    """Where the samples come from.

    kind: one of DataKind. root: a directory or file (not needed for `synthetic`).
    split: train or test. batch_size: samples per scoring batch. seed: which samples.
    shape/num_classes: only for `synthetic` (seeded Gaussian images, random labels).
    """

    kind: DataKind
    root: str | None = Field(default=None, max_length=4096)
    split: Literal["train", "test"] = "train"
    batch_size: int = Field(default=64, ge=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    shape: tuple[int, ...] | None = Field(default=None, min_length=1, max_length=4)
    num_classes: int | None = Field(default=None, ge=1, le=100_000)
    limit: int | None = Field(default=None, ge=1, description="a seeded random subset of N samples of the split (seed = `seed`)")
    fresh_per_arch: bool = Field(default=False, description="score and batch jobs: instead of one shared batch "
                                 "(chosen by `seed`), each architecture gets its own batch of batch_size samples "
                                 "drawn with spec_seed(model, options.seed), as a data loader per architecture "
                                 "would give it; reproducible per spec")

    @model_validator(mode="after")
    def _check(self) -> "DataRef":
        if self.kind == "synthetic":
            if self.shape is None:
                object.__setattr__(self, "shape", (3, 32, 32))
            if any(s < 1 or s > 4096 for s in self.shape or ()):
                raise ValueError("synthetic shape entries must be in 1..4096")
            if self.num_classes is None:
                object.__setattr__(self, "num_classes", 10)
        elif not self.root:
            raise ValueError(f"data kind {self.kind!r} needs a 'root' path")
        return self


Profile = Literal["paper", "official"]
Split = Literal["eq7", "cover", "official"]
BnMode = Literal["batch", "calibrated", "per_sample", "shared"]
OVERLAP_DOC = "batch-mode sub-batch overlap r; default: the profile's (0.6 paper, 0.0 official)"
SPLIT_DOC = ("how batch mode cuts the batch: 'eq7' (the paper's Eq. 7), 'cover' (equal sub-batches from 0 to B), "
             "'official' (the released code's slicing); default: the profile's")
PROFILE_DOC = ("'paper' (Yang et al. 2022) or 'official' (the authors' released code: off-diagonal GC, "
               "Conv/Linear/LayerNorm gradients, shared BN statistics; batch mode only)")


def _check_profile(opts: Any) -> None:
    if opts.profile == "official" and opts.mode != "batch":
        raise ValueError("profile='official' exists in batch mode only; use mode='batch'")
    if opts.bn == "shared" and opts.mode != "batch":
        raise ValueError("bn='shared' is a batch-mode option")


class ScoreOptions(_Options):
    """Options of a score job: GradCosine/GradNorm mode, BN handling, extra zero-cost proxies."""

    mode: Literal["sample", "batch"] = Field(
        default="sample", description="'sample' (exact sample-wise GC) or 'batch' (B-GC over sub-batches, Eq. 7)")
    sub_batches: int = Field(default=2, ge=2, le=1024, description="batch mode: sub-batches D of the batch")
    overlap: float | None = Field(default=None, ge=0.0, lt=1.0, description=OVERLAP_DOC)
    bn: BnMode | None = Field(default=None, description="BatchNorm statistics; default by mode and profile")
    split: Split | None = Field(default=None, description=SPLIT_DOC)
    profile: Profile = Field(default="paper", description=PROFILE_DOC)
    proxies: list[str] = Field(default_factory=list, max_length=32,
                               description="zero-cost proxies to compute as well (initscore proxies --list)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the weights' seed: torch is seeded with "
                      "initscore.proxies.batch.spec_seed(model, seed), so a spec scores the same in score and batch "
                      "jobs, the CLI and the library")

    @model_validator(mode="after")
    def _profile(self) -> "ScoreOptions":
        _check_profile(self)
        return self


class RectifyOptions(_Options):
    """Hyperparameters of NIO (Algorithm 3) or a baseline (gradinit, metainit, kaiming)."""

    method: Literal["nio", "gradinit", "metainit", "kaiming"] = Field(
        default="nio", description="'nio' (Algorithm 3), the baselines 'gradinit' and 'metainit', or 'kaiming' "
                                   "(the input unchanged)")
    iters: int = Field(default=100, ge=0, description="optimization steps on the scales")
    lr: float = Field(default=0.1, gt=0.0, le=100.0, description="learning rate of the scale optimizer")
    gamma: float | None = Field(default=None, gt=0.0, description="bound on g_max; default: 2x the initial g_max")
    sub_batches: int = Field(default=2, ge=2, le=1024, description="batch mode: sub-batches D of each batch")
    overlap: float | None = Field(default=None, ge=0.0, lt=1.0, description=OVERLAP_DOC)
    mode: Literal["sample", "batch"] = Field(
        default="batch", description="'batch' (B-GC over sub-batches, Eq. 7) or 'sample' (exact sample-wise GC)")
    bn: BnMode | None = Field(
        default=None, description="BatchNorm statistics; default: 'batch' in batch mode, 'calibrated' in sample mode, "
                                  "'shared' in the official profile")
    split: Split | None = Field(default=None, description=SPLIT_DOC)
    profile: Profile = Field(default="paper", description=PROFILE_DOC)
    objective: Literal["gc", "gc_gn", "gc_gn_sqrt", "gv", "gv_gn", "gv_gn_sqrt"] | None = Field(
        default=None, description="official profile: the released code's ascent target (default 'gc')")
    gn_mul: float = Field(default=1.0, ge=0.0, le=1e6, description="official profile: weight of the GN term")
    gn_weight: float = Field(default=1.0, ge=0.0, le=1e6,
                             description="weight of GN in the unconstrained step, which raises GC + gn_weight*GN "
                                         "(1 = Algorithm 3; 0 = GradCosine-only ascent)")
    gamma_margin: float = Field(default=0.0, ge=0.0, lt=1.0,
                                description="take the constraint step when g_max > (1 - gamma_margin) * gamma")
    select: Literal["last", "feasible", "best"] = Field(
        default="last", description="'last' (Algorithm 3), 'feasible': the last iterate with g_max <= gamma, or "
                                    "'best' (nio only): the within-bound iterate with the largest GC + gn_weight*GN")
    min_scale: float = Field(default=0.01, gt=0.0, le=1.0, description="every scale is clamped to >= min_scale "
                                                                      "after each step")
    max_scale: float | None = Field(default=None, ge=1.0, le=1e6,
                                    description="every scale is clamped to <= max_scale after each step, so one "
                                                "large step cannot blow a tensor up; default: no upper bound")
    optimizer: Literal["adam", "sgd", "rescale_adam"] | None = Field(
        default=None, description="'adam' (one Adam for both branches), 'sgd', or 'rescale_adam' (the NIO/GradInit "
                                  "reference optimizer: clipped scale gradients, one first moment per branch); "
                                  "default: 'adam' (paper profile), 'rescale_adam' (official profile)")
    grad_clip: float = Field(default=1.0, ge=0.0, le=1e6,
                             description="rescale_adam: each scale's gradient is clipped to +-grad_clip (0 = off)")
    scale_tensors: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=1, max_length=256,
        description="which parameter tensors get a scale: shell patterns on parameter names, '!' excludes "
                    "(e.g. ['fc.weight'] or ['!fc.*']); a pattern matching no tensor is an error; "
                    "default: every non-zero tensor")
    verify_batches: int = Field(
        default=0, ge=0, le=64,
        description="select 'feasible'/'best' only: the returned iterate must also be within the bound on this many "
                    "more training batches (the method's own constraint test; checked latest/best first); 0 = off")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the batches the loop draws")
    heldout_batches: int = Field(default=2, ge=0, le=64,
                                 description="job driver only: batches split off the data and scored before/after")

    @model_validator(mode="after")
    def _best_is_nio_only(self) -> "RectifyOptions":
        if self.select == "best" and self.method != "nio":
            raise ValueError(f"select='best' ranks iterates by NIO's objective; method {self.method!r} takes "
                             "'last' or 'feasible'")
        if self.verify_batches and self.select == "last":
            raise ValueError("verify_batches checks the iterate that select returns; use select='feasible' or 'best'")
        _check_profile(self)
        if self.profile == "official" and self.method not in ("nio", "kaiming"):
            raise ValueError(f"profile='official' is the released code's NIO; method {self.method!r} takes 'paper'")
        if self.objective is not None and self.profile != "official":
            raise ValueError("objective selects a target of the released code; it needs profile='official'")
        if self.optimizer is None:
            object.__setattr__(self, "optimizer", "rescale_adam" if self.profile == "official" else "adam")
        return self


class PropagationOptions(_Model):
    """Options of a signal-propagation report (initscore.propagation.report); the data's seed is data.seed."""

    seed: int = Field(default=0, ge=0, le=2**31 - 1,
                      description="torch seed for the initial weights and for the forward pass's randomness (dropout)")
    level: Literal["leaf", "block"] = Field(default="leaf", description="leaf: every parameterized leaf module; "
                                            "block: each module held in a Sequential/ModuleList (a residual block) "
                                            "and the parameterized leaves outside them")
    train_mode: bool = Field(default=True, description="run the model in train mode (BN batch statistics); "
                             "False: eval mode")
    plot: bool = Field(default=True, description="render the PNG of variance by depth")


def _no_fresh_batches(data: DataRef, kind: str) -> None:
    if data.fresh_per_arch:
        raise ValueError(f"data.fresh_per_arch draws a batch per architecture for score and batch jobs; a {kind} job "
                         "reads its data's own batches (drop it)")


DEFAULT_RANK_BY = "ensemble"  # the recommended score (initscore.proxies.ensemble); client and CLI read it here
RANK_BUILTINS = ("gradcosine", "gradnorm")  # every score result has them; rank_by may also name a listed proxy
Loc = tuple[Union[str, int], ...]


def request_problems(kind: str | None, data: DataRef | None, options: Any, *, n_models: int | None = None,
                     top_k: int | None = None, rank_by: str | None = None) -> list[tuple[Loc, str, Any]]:
    """The rules across the fields of a job request, as (location, message, offending value); a part given as
    None is not checked. The request models raise them as validation errors at that location, so the library,
    the CLI and the API name the same field with the same message; the API also runs them on the parts of a
    body that broke the contract elsewhere (service/validation.py), to list every problem at once.

    - score, batch, rectify and search: data.batch_size >= 2 (GradCosine compares pairs of samples; a search's
      proxies compare samples too);
    - score and batch in batch mode: options.sub_batches <= data.batch_size;
    - batch: top_k <= the number of models; rank_by is "ensemble", a name of RANK_BUILTINS or a proxy listed
      in options.proxies.
    """
    out: list[tuple[Loc, str, Any]] = []
    if data is not None and kind in ("score", "batch", "rectify", "search") and data.batch_size < 2:
        why = ("the proxies compare samples (ZiCo splits the batch in two, naswot and jacob_cov compare pairs)"
               if kind == "search" else "GradCosine compares at least 2 samples")
        out.append((("data", "batch_size"), f"{why}; use batch_size >= 2", data.batch_size))
    if isinstance(options, ScoreOptions) and data is not None and options.mode == "batch" \
            and options.sub_batches > data.batch_size:
        out.append((("options", "sub_batches"), f"sub_batches {options.sub_batches} exceeds data.batch_size "
                    f"{data.batch_size}", options.sub_batches))
    if kind == "batch":
        if top_k is not None and n_models is not None and top_k > n_models:
            out.append((("top_k",), f"top_k {top_k} is larger than the {n_models} models", top_k))
        if rank_by is not None and isinstance(options, ScoreOptions):
            allowed = set(RANK_BUILTINS) | set(options.proxies) | {"ensemble"}
            if rank_by not in allowed:
                out.append((("rank_by",), f"rank_by {rank_by!r} must be one of {sorted(allowed)} (a proxy must also "
                            "be listed in options.proxies)", rank_by))
    return out


def _raise_problems(title: str, problems: list[tuple[Loc, str, Any]]) -> None:
    """Raise :func:`request_problems`' findings as one pydantic ValidationError whose errors sit at their fields
    (pydantic puts the request's own location in front, e.g. the union's tag)."""
    if problems:
        raise ValidationError.from_exception_data(title, [
            InitErrorDetails(type=PydanticCustomError("request_rule", "{rule}", {"rule": msg}), loc=loc, input=value)
            for loc, msg, value in problems])


class ScoreRequest(_Model):
    kind: Literal["score"] = "score"
    model: ModelSpec
    data: DataRef
    options: ScoreOptions = Field(default_factory=ScoreOptions)

    @model_validator(mode="after")
    def _rules(self) -> "ScoreRequest":
        _raise_problems(type(self).__name__, request_problems(self.kind, self.data, self.options))
        return self


class RectifyRequest(_Model):
    kind: Literal["rectify"] = "rectify"
    model: ModelSpec
    data: DataRef
    options: RectifyOptions = Field(default_factory=RectifyOptions)
    init_seed: int = Field(default=0, ge=0, le=2**31 - 1, description="torch seed for the initial weights")

    @model_validator(mode="after")
    def _one_batch_stream(self) -> "RectifyRequest":
        _no_fresh_batches(self.data, "rectify")
        _raise_problems(type(self).__name__, request_problems(self.kind, self.data, self.options))
        return self


class BatchRequest(_Model):
    kind: Literal["batch"] = "batch"
    models: list[ModelSpec] = Field(min_length=1)
    data: DataRef
    options: ScoreOptions = Field(default_factory=ScoreOptions)
    rank_by: str = Field(default=DEFAULT_RANK_BY, description="score used to rank: 'ensemble' (the recommended zero-cost "
                         "score; computed even when options.proxies does not list it), 'gradcosine', 'gradnorm' or a proxy "
                         "listed in options.proxies")
    top_k: int | None = Field(default=None, ge=1, description="return only the k best entries (and the failed ones); "
                              "the worker keeps only those k results in memory, so thousands of models stay flat")

    @model_validator(mode="after")
    def _rules(self) -> "BatchRequest":
        _raise_problems(type(self).__name__, request_problems(self.kind, self.data, self.options,
                                                              n_models=len(self.models), top_k=self.top_k,
                                                              rank_by=self.rank_by))
        return self


class PropagationRequest(_Model):
    kind: Literal["propagation"] = "propagation"
    model: ModelSpec
    data: DataRef
    options: PropagationOptions = Field(default_factory=PropagationOptions)

    @model_validator(mode="after")
    def _one_batch(self) -> "PropagationRequest":
        _no_fresh_batches(self.data, "propagation")
        return self


NB201_CELLS = 5 ** 6  # architectures in the NAS-Bench-201 space
SEARCH_SET_LEVEL = ("az_nas",)  # scores of a whole set rather than of one architecture (initscore.search.SET_LEVEL)


class SearchSample(_Model):
    """Architectures drawn from a search space: ``n`` distinct cells, ``random.Random(sample_seed)``."""

    space: Literal["nb201"] = Field(default="nb201", description="the search space (NAS-Bench-201)")
    n: int = Field(ge=1, le=NB201_CELLS, description=f"how many distinct cells to draw (1..{NB201_CELLS})")
    sample_seed: int = Field(default=0, ge=0, le=2**31 - 1, description="which cells: random.Random(sample_seed)")


class SearchRequest(_Model):
    """The k best of many architectures by one zero-cost score (initscore.search.top_k); exactly one of ``models``,
    ``cells`` or ``sample`` gives the candidates, scored in that order."""

    kind: Literal["search"] = "search"
    models: list[ModelSpec] | None = Field(default=None, min_length=1, max_length=4 * NB201_CELLS,
                                           description="explicit model specs")
    cells: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] | None = Field(
        default=None, min_length=1, max_length=4 * NB201_CELLS, description="NAS-Bench-201 cell strings "
        "('|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'), each the spec {arch: nb201, args: {cell, **args}}")
    sample: SearchSample | None = Field(default=None, description="cells drawn from a search space")
    args: dict[str, JsonScalar] = Field(default_factory=dict, max_length=64,
                                        description="arguments of every nb201 spec built from cells or sample "
                                                    "(e.g. C, N, num_classes)")
    data: DataRef
    k: int = Field(default=5, ge=1, description="how many of the best to return (at most the number of candidates)")
    proxy: str = Field(default=DEFAULT_RANK_BY, min_length=1, max_length=100,
                       description="the score to rank by (higher = better): a registered proxy (initscore proxies "
                                   "--list; default the recommended 'ensemble') or 'az_nas' (AZ-NAS's rank "
                                   "aggregation over the whole set)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the weights' seed: each architecture is "
                      "initialized from initscore.proxies.batch.spec_seed(spec, seed), as on every scoring path")

    @field_validator("k")
    @classmethod
    def _k_fits(cls, k: int, info: Any) -> int:
        d = info.data
        n = len(d["models"]) if d.get("models") else len(d["cells"]) if d.get("cells") else \
            d["sample"].n if d.get("sample") is not None else None
        if n is not None and k > n:
            raise ValueError(f"must be in 1..{n} (the number of candidates), got {k}")
        return k

    @field_validator("proxy")
    @classmethod
    def _known_proxy(cls, proxy: str) -> str:
        from initscore.proxies import PROXIES  # the registry's names, torch-free

        if proxy not in PROXIES and proxy not in SEARCH_SET_LEVEL:
            raise ValueError(f"unknown proxy {proxy!r}; known: {[*PROXIES, *SEARCH_SET_LEVEL]}")
        return proxy

    @model_validator(mode="after")
    def _one_source(self) -> "SearchRequest":
        given = [n for n in ("models", "cells", "sample") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of models, cells or sample (got {given or 'none'})")
        if self.models is not None and self.args:
            raise ValueError("args applies to cells and sample; put a model's arguments in its spec")
        _raise_problems(type(self).__name__, request_problems(self.kind, self.data, None))
        return self


JobRequest = Annotated[
    Union[ScoreRequest, RectifyRequest, BatchRequest, PropagationRequest, SearchRequest], Field(discriminator="kind")
]


def request_hash(req: BaseModel, engine_version: str = ENGINE_VERSION) -> str:
    """Content hash of a request (spec + data ref + options + seeds) and the engine version.

    Identical requests have identical hashes, so a stored result can answer them.
    """
    payload = json.dumps(
        {"engine": engine_version, "request": req.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


# ---------------------------------------------------------------- results
class LayerScore(_Model):
    """Per parameter tensor: mean pairwise cosine of its gradient slices and max/min norm ratio (paper Fig. 3)."""

    name: str
    numel: int
    gc: float
    norm_ratio: float | None  # g_max/g_min of this tensor's per-sample gradient norms; None if g_min == 0
    gn: float


class ScoreResult(_Model):
    kind: Literal["score"] = "score"
    arch: str
    params: int
    gc: float
    gn: float
    g_max: float
    g_min: float
    n: int
    mode: str
    bn: str | None = None
    layers: list[LayerScore] = Field(default_factory=list)
    proxies: dict[str, float] = Field(default_factory=dict)
    proxy_errors: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0


class IterationRecord(_Model):
    it: int
    gc: float
    gn: float
    g_max: float
    constrained: bool


class VerifiedIterate(_Model):
    iterate: int
    g_max: float
    passed: bool


class Verification(_Model):
    batches: int = Field(description="training batches each candidate iterate was checked on")
    passed: bool = Field(description="False: no iterate was within the bound on them; the smallest g_max was returned")
    checked: list[VerifiedIterate] = Field(default_factory=list)


class RectifyResult(_Model):
    kind: Literal["rectify"] = "rectify"
    arch: str
    method: str
    params: int
    scales: dict[str, float]
    unscalable: list[str] = Field(default_factory=list, description="zero-initialized tensors a scale cannot change")
    fixed: list[str] = Field(default_factory=list, description="non-zero tensors left unscaled by options.scale_tensors")
    history: list[IterationRecord] = Field(default_factory=list)
    heldout_before: dict[str, float] = Field(default_factory=dict)  # gc, gn, g_max on held-out batches
    heldout_after: dict[str, float] = Field(default_factory=dict)
    gamma: float | None = None
    seconds: float = 0.0
    gamma_margin: float = 0.0
    select: str = "last"
    returned_iterate: int | None = Field(default=None, description="steps taken by the returned scales")
    final: IterationRecord | None = Field(default=None, description="select='feasible': the last iterate, measured on one more batch")
    verification: Verification | None = Field(
        default=None, description="options.verify_batches > 0: the iterates checked on the extra batches")
    weights_sha256: str | None = None
    onnx_sha256: str | None = Field(default=None, description="an ONNX upload: the file with its rectified initializers")


class BatchEntry(_Model):
    index: int
    model: ModelSpec
    status: Literal["finished", "failed"]
    rank: int | None = None
    score: float | None = None
    result: ScoreResult | None = None
    error: str | None = None


class BatchResult(_Model):
    kind: Literal["batch"] = "batch"
    rank_by: str
    entries: list[BatchEntry]
    seconds: float = 0.0


class LayerPropagation(_Model):
    name: str
    depth: int
    forward_var: float
    backward_var: float | None
    kind: str | None = None  # the module's class name


class PropagationResult(_Model):
    kind: Literal["propagation"] = "propagation"
    arch: str
    layers: list[LayerPropagation]
    input_output_cka: float | None = None
    input_var: float | None = None
    output_var: float | None = None
    loss: float | None = None
    loss_kind: str | None = None  # cross_entropy_sum or half_sum_sq
    plot_sha256: str | None = None
    seconds: float = 0.0


class SearchCandidate(_Model):
    index: int = Field(description="position in the request's candidates")
    model: ModelSpec
    score: float | None = Field(description="the ranking score; None: not scorable (listed only when fewer than k "
                                            "candidates could be scored)")
    values: dict[str, float] = Field(default_factory=dict, description="the proxy values computed for it")


class SearchFailure(_Model):
    index: int
    reason: str


class SearchResult(_Model):
    kind: Literal["search"] = "search"
    proxy: str
    k: int
    total: int = Field(description="candidates in the request")
    top: list[SearchCandidate] = Field(description="the k best, best first")
    scored: int = Field(description="candidates scored by the run that finished")
    resumed: int = Field(default=0, description="candidates taken from the checkpoint of an interrupted run (not "
                                                "scored again)")
    failed: int = Field(default=0, description="candidates that could not be scored (ranked below every scored one)")
    reasons: list[SearchFailure] = Field(default_factory=list, description="the first failures and why")
    seconds: float = 0.0


JobResult = Annotated[
    Union[ScoreResult, RectifyResult, BatchResult, PropagationResult, SearchResult], Field(discriminator="kind")
]

JobKind = Literal["score", "rectify", "batch", "propagation", "search"]  # the `kind` tags of JobRequest (a test checks both agree)
JOB_KINDS: tuple[str, ...] = get_args(JobKind)
JobState = Literal["queued", "running", "finished", "failed", "cancelled"]  # the only list of job states
JOB_STATES: tuple[str, ...] = get_args(JobState)
FINAL_STATES: frozenset[str] = frozenset({"finished", "failed", "cancelled"})  # no transition leaves them
