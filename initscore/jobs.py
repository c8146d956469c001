"""The one seam between the service and the engine: ``run_job(request) -> (result, weights, png)``.

The RQ worker (``worker.jobs``) and the inline service mode call this function and
nothing else of the engine. torch and the engine modules are imported lazily, inside
the function, so importing this module stays cheap and torch-free.

Dispatch:
  score        initscore.scores.gradcosine (+ initscore.proxies.compute_many); weights seeded by
               initscore.proxies.batch.spec_seed(model, options.seed), as in batch jobs and the library
  rectify      initscore.nio.rectify (NIO, Algorithm 3, or a baseline) -> new state dict
  batch        gradcosine (+ proxies) for every spec on ONE shared data batch (data.fresh_per_arch: one
               batch per spec, drawn with its spec seed), ranked
               by `rank_by` (default the recommended `ensemble`; higher is better; failures
               are listed, unranked); each entry scored as a score job would score it
  propagation  initscore.propagation.report (+ plot -> PNG bytes)
  search       initscore.search.top_k over the request's candidates (models, cells or a space sample): one
               architecture at a time, the k best kept; resumable through ``checkpoint``

``progress(done, total, metrics)`` is called as work advances (rectify: every
iteration; batch and search: every architecture); it may raise to abort the job. ``checkpoint`` (search jobs): an
object with ``load()``/``save(state)`` where the scan's state is kept, so a re-run after a crash resumes after the
last saved architecture (the worker backs it by its artifact store, the CLI by ``--resume FILE``).

What the deployment lends a job (``run_job``'s keywords, held in a :class:`JobEnv` for the call):
``allowed_roots`` confines dataset paths at read time; ``max_params`` refuses a model over the cap
before it is allocated (a pure-Python count, else a build on the meta device); ``model_file(sha256)``
returns the bytes of an uploaded ONNX network for ``{"arch": "onnx"}`` specs; ``data_caps`` bounds the bytes
and samples a data reference may decode.
"""
from __future__ import annotations

import contextvars
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from initscore.contract import (
    BatchEntry,
    BatchRequest,
    BatchResult,
    JobRequest,
    LayerScore,
    PropagationRequest,
    PropagationResult,
    RectifyRequest,
    RectifyResult,
    ScoreOptions,
    ScoreRequest,
    ScoreResult,
    SearchRequest,
    SearchResult,
    request_hash,
)
from initscore.errors import InitscoreError, OptionsError, SpecError, is_out_of_memory

Progress = Callable[[int, int, dict[str, Any]], None]

__all__ = ["JobEnv", "parse_request", "run_job"]


@dataclass(frozen=True)
class JobEnv:
    """What the deployment lends one job (see the module docstring); the defaults are the library's: no limits."""

    allowed_roots: list[str] | None = None
    max_params: int | None = None
    model_file: Callable[[str], bytes] | None = None
    data_caps: Any = None  # an initscore.data.DataCaps: what a data reference may decode


_ENV: contextvars.ContextVar[JobEnv] = contextvars.ContextVar("initscore_job_env", default=JobEnv())


def parse_request(request: Any) -> Any:
    """A contract request model from a model or a JSON-like dict."""
    from pydantic import TypeAdapter

    if isinstance(request, (ScoreRequest, RectifyRequest, BatchRequest, PropagationRequest, SearchRequest)):
        return request
    return TypeAdapter(JobRequest).validate_python(dict(request))


def _num_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))




def _load_data(ref: Any) -> Any:
    from initscore import data as data_mod

    env = _ENV.get()
    return data_mod.load(ref, allowed_roots=env.allowed_roots, caps=env.data_caps)


def _build(spec: Any, seed: int) -> Any:
    """A fresh network for ``spec``: registry models from ``torch.manual_seed(seed)``, ONNX uploads with their
    own weights; over the job's parameter cap -> SpecError before anything is allocated."""
    import torch

    from initscore import models

    env = _ENV.get()
    raw = spec.model_dump(mode="json")
    if spec.arch == "onnx":
        _, args = models.validate_spec(raw)
        if env.model_file is None:
            raise SpecError("an 'onnx' spec needs its uploaded file: submit it to the service (initscore upload) or "
                            "build it with initscore.onnx_model.from_bytes")
        from initscore.onnx_model import from_bytes

        net = from_bytes(env.model_file(args["sha256"]))
        models.check_cap("onnx", _num_params(net), env.max_params)
        return net
    torch.manual_seed(seed)
    return models.build(raw, max_params=env.max_params)


def _check_fits(model: Any, x: Any, num_classes: int) -> None:
    """One no-grad forward of two samples: the model must take the data's inputs and output >= num_classes
    logits per sample (else OptionsError naming the shapes, instead of a failure deep inside the engine)."""
    import torch

    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x[:2])
    except RuntimeError as exc:
        raise OptionsError(f"the model does not accept inputs of shape {list(x.shape[1:])}: "
                           f"{str(exc).splitlines()[0][:300]}") from None
    finally:
        model.train(was_training)
    if num_classes > 0 and (out.dim() != 2 or out.shape[1] < num_classes):
        raise OptionsError(f"the model outputs {list(out.shape[1:])} values per sample but the data has "
                           f"{num_classes} classes; set num_classes in the model's args")


def _score_one(spec: Any, batch: Any, opts: ScoreOptions, num_classes: int = 1) -> ScoreResult:
    """GradCosine/GradNorm (+ opts.proxies) of ``spec`` with weights seeded by s = spec_seed(spec, opts.seed): the
    same architecture and seed give the same weights, hence the same score, in score and batch jobs, whatever the
    position in the request, and in initscore.proxies.score_architectures / initscore.search. ``batch`` is an
    (x, y) pair, or a callable ``batch(s)`` that draws this architecture's own batch (data.fresh_per_arch)."""
    from initscore.proxies.batch import spec_seed
    from initscore.scores import gradcosine

    t0 = time.perf_counter()
    s = spec_seed(spec.model_dump(mode="json"), opts.seed)
    if callable(batch):
        batch = batch(s)
    model = _build(spec, s)
    _check_fits(model, batch[0], num_classes)
    # every ScoreOptions field but the proxies and the weights' seed is a gradcosine keyword of the same name
    gs = gradcosine(model, batch, **opts.model_dump(exclude={"proxies", "seed"}))
    proxies: dict[str, float] = {}
    proxy_errors: dict[str, str] = {}
    if opts.proxies:
        from initscore.proxies import compute_many

        proxies, proxy_errors = compute_many(list(opts.proxies), model, batch)
        proxies = {k: float(v) for k, v in proxies.items()}
    return ScoreResult(
        arch=spec.arch,
        params=_num_params(model),
        gc=float(gs.gc),
        gn=float(gs.gn),
        g_max=float(gs.g_max),
        g_min=float(gs.g_min),
        n=int(gs.n),
        mode=str(gs.mode),
        bn=gs.bn,
        layers=[
            LayerScore(name=l.name, numel=int(l.numel), gc=float(l.gc),
                       norm_ratio=None if l.norm_ratio is None else float(l.norm_ratio), gn=float(l.gn))
            for l in gs.layers
        ],
        proxies=proxies,
        proxy_errors={k: str(v) for k, v in proxy_errors.items()},
        seconds=time.perf_counter() - t0,
    )


def _rank_value(res: ScoreResult, rank_by: str) -> float | None:
    if rank_by == "gradcosine":
        v = res.gc
    elif rank_by == "gradnorm":
        v = res.gn
    else:
        v = res.proxies.get(rank_by)
    return None if v is None or not math.isfinite(v) else float(v)


def _scoring_batch(td: Any, ref: Any) -> Any:
    """One shared batch chosen by ref.seed, or (ref.fresh_per_arch) a draw per architecture from its spec seed."""
    if ref.fresh_per_arch:
        return lambda s: td.batch(ref.batch_size, s)
    return td.batch(ref.batch_size, ref.seed)


def _run_score(req: ScoreRequest) -> ScoreResult:
    td = _load_data(req.data)
    return _score_one(req.model, _scoring_batch(td, req.data), req.options, num_classes=td.num_classes)


def _run_batch(req: BatchRequest, progress: Progress | None) -> BatchResult:
    t0 = time.perf_counter()
    td = _load_data(req.data)
    batch = _scoring_batch(td, req.data)
    entries: list[dict[str, Any]] = []
    n = len(req.models)
    opts = req.options
    if req.rank_by == "ensemble" and "ensemble" not in opts.proxies:  # the default ranks by the recommended score
        opts = opts.model_copy(update={"proxies": [*opts.proxies, "ensemble"]})
    from initscore.proxies.batch import DISCONNECTED, nb201_disconnected

    import heapq

    best: list[tuple[float, int]] = []  # top_k: min-heap of (score, -index) of the entries kept
    for i, spec in enumerate(req.models):
        try:
            if spec.arch == "nb201" and nb201_disconnected(str(spec.args.get("cell", ""))):
                raise OptionsError(DISCONNECTED)  # not scored, listed with the reason (as in score_architectures)
            res = _score_one(spec, batch, opts, num_classes=td.num_classes)
            value = _rank_value(res, req.rank_by)
            entries.append({"index": i, "model": spec, "status": "finished", "score": value, "result": res})
        except (InitscoreError, RuntimeError, ValueError) as exc:
            if is_out_of_memory(exc) and not isinstance(exc, InitscoreError):
                raise  # the job fails as out of memory; a per-sample ResourceError is this entry's failure
            entries.append({"index": i, "model": spec, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if req.top_k is not None:  # keep the k best scored entries and the failures (their reasons), nothing else
            e = entries[-1]
            if e.get("score") is not None:
                key = (e["score"], -i)
                if len(best) < req.top_k:
                    heapq.heappush(best, key)
                elif key > best[0]:
                    heapq.heapreplace(best, key)
                kept = {-b for _, b in best}
                entries = [x for x in entries if x.get("score") is None and x["status"] == "failed" or x["index"] in kept]
            elif e["status"] == "finished":  # scored but unrankable (rank_by errored): listed like a failure
                e["status"] = "failed"
                e["error"] = f"no {req.rank_by} score: " + "; ".join(f"{k}: {v}" for k, v in e["result"].proxy_errors.items())
                e["result"] = None
        if progress is not None:
            metrics: dict[str, Any] = {"arch": spec.arch}
            top = max((x["score"] for x in entries if x.get("score") is not None), default=None)
            if top is not None:
                metrics["best_score"] = top
            progress(i + 1, n, metrics)
    ranked = sorted((e for e in entries if e.get("score") is not None), key=lambda e: (-e["score"], e["index"]))
    for r, e in enumerate(ranked, start=1):
        e["rank"] = r
    order = ranked + [e for e in entries if e.get("score") is None]
    return BatchResult(rank_by=req.rank_by, entries=[BatchEntry(**e) for e in order], seconds=time.perf_counter() - t0)


def _run_rectify(req: RectifyRequest, progress: Progress | None) -> tuple[RectifyResult, dict[str, Any]]:
    from initscore import nio

    opts = req.options
    td = _load_data(req.data)
    bs = req.data.batch_size
    heldout = None
    train = td
    if opts.heldout_batches > 0:
        n_held = opts.heldout_batches * bs
        if n_held + bs > len(td.y):
            raise OptionsError(
                f"{len(td.y)} samples are too few for {opts.heldout_batches} held-out batch(es) of {bs} plus one "
                "training batch; raise data.limit or lower options.heldout_batches / data.batch_size"
            )
        train, held = td.split(n_held, req.data.seed)
        heldout = [(held.x[i * bs:(i + 1) * bs], held.y[i * bs:(i + 1) * bs]) for i in range(opts.heldout_batches)]
    model = _build(req.model, req.init_seed)
    _check_fits(model, train.x, td.num_classes)

    rect = nio.rectify(model, train.batches(bs, req.data.seed), opts, heldout=heldout, progress=progress)
    result = rect.to_result(req.model.arch, _num_params(model))
    weights = dict(rect.state_dict)
    if hasattr(model, "onnx_state_dict"):  # an uploaded ONNX network: weights under its initializer names
        weights = model.onnx_state_dict(weights)
    return result, weights


def _run_propagation(req: PropagationRequest) -> tuple[PropagationResult, bytes | None]:
    """initscore.propagation.report of the request's model (weights and forward randomness seeded by
    options.seed, train or eval mode by options.train_mode) on the batch data.seed draws; the PNG when
    options.plot, its sha256 in the result."""
    import hashlib

    from initscore import propagation

    opts = req.options
    t0 = time.perf_counter()
    td = _load_data(req.data)
    batch = td.batch(req.data.batch_size, req.data.seed)
    model = _build(req.model, opts.seed)
    model.train(opts.train_mode)
    _check_fits(model, batch[0], 0)  # any output: the report follows the signal, not a loss
    rep = propagation.report(model, batch, seed=opts.seed, level=opts.level)
    png = propagation.plot_bytes(rep) if opts.plot else None
    sha = None if png is None else hashlib.sha256(png).hexdigest()
    return rep.to_result(req.model.arch, plot_sha256=sha, seconds=time.perf_counter() - t0), png


def _run_search(req: SearchRequest, progress: Progress | None, checkpoint: Any) -> SearchResult:
    """initscore.search.top_k over the request's candidates on its data (one shared batch, or a batch per spec with
    data.fresh_per_arch), weights from spec_seed(spec, seed) as on every scoring path. Invalid candidates raise
    SpecError naming the first ones; the checkpoint must match the request's content hash to be resumed."""
    from initscore import search

    bad = search.candidate_problems(req, limit=3)
    if bad:
        raise SpecError("; ".join(f"{b['loc']}: {b['msg']}" for b in bad))
    specs = search.candidates(req)
    td = _load_data(req.data)
    batch = _scoring_batch(td, req.data)

    def report(done: int, total: int, best: list[Any]) -> None:
        if progress is not None:
            lead = best[0] if best else None
            metrics = {} if lead is None else {"best_score": lead.score, "best_index": lead.index}
            progress(done, total, metrics)

    res = search.top_k(specs, batch, req.k, req.proxy, seed=req.seed, progress=report, checkpoint=checkpoint,
                       identity=request_hash(req))
    return res.to_result()


def run_job(
    request: Any, *, progress: Progress | None = None, allowed_roots: list[str] | None = None,
    max_params: int | None = None, model_file: Callable[[str], bytes] | None = None, data_caps: Any = None,
    checkpoint: Any = None,
) -> tuple[Any, dict[str, Any] | None, bytes | None]:
    """Run one job request in this process; returns (JobResult, rectified state dict or None, PNG bytes or None).

    `allowed_roots`, `max_params`, `model_file`, `data_caps` (an ``initscore.data.DataCaps``; None: its
    defaults): what the deployment lends the job (module docstring); None means unconfined / uncapped / no
    uploads (library and CLI use). A rectified ONNX upload's weights are keyed by the file's initializer names.
    `checkpoint`: where a search job keeps its resumable state (module docstring); other kinds ignore it.
    """
    token = _ENV.set(JobEnv(allowed_roots, max_params, model_file, data_caps))
    try:
        return _run(request, progress, checkpoint)
    finally:
        _ENV.reset(token)


def _run(request: Any, progress: Progress | None, checkpoint: Any = None
         ) -> tuple[Any, dict[str, Any] | None, bytes | None]:
    req = parse_request(request)
    if isinstance(req, ScoreRequest):
        res = _run_score(req)
        if progress is not None:
            progress(1, 1, {"gc": res.gc, "gn": res.gn})
        return res, None, None
    if isinstance(req, BatchRequest):
        return _run_batch(req, progress), None, None
    if isinstance(req, RectifyRequest):
        res, weights = _run_rectify(req, progress)
        return res, weights, None
    if isinstance(req, PropagationRequest):
        res, png = _run_propagation(req)
        if progress is not None:
            progress(1, 1, {})
        return res, None, png
    if isinstance(req, SearchRequest):
        return _run_search(req, progress, checkpoint), None, None
    raise OptionsError(f"unknown job kind {getattr(req, 'kind', None)!r}")  # pragma: no cover
