"""The one seam between the service and the engine: ``run_job(request) -> (result, weights, png)``.

The RQ worker (``worker.jobs``) and the inline service mode call this function and
nothing else of the engine. torch and the engine modules are imported lazily, inside
the function, so importing this module stays cheap and torch-free.

Dispatch:
  score        initscore.scores.gradcosine (+ initscore.proxies.compute_many)
  rectify      initscore.nio.rectify (NIO, Algorithm 3, or a baseline) -> new state dict
  batch        gradcosine (+ proxies) for every spec on ONE shared data batch, ranked
               by `rank_by` (higher is better; failures are listed, unranked)
  propagation  initscore.propagation.report (+ plot -> PNG bytes)

``progress(done, total, metrics)`` is called as work advances (rectify: every
iteration; batch: every architecture); it may raise to abort the job.
"""
from __future__ import annotations

import math
from contextvars import ContextVar
import os
import tempfile
import time
from typing import Any, Callable, Mapping

from initscore.contract import (
    BatchEntry,
    BatchRequest,
    BatchResult,
    IterationRecord,
    JobRequest,
    LayerPropagation,
    LayerScore,
    PropagationRequest,
    PropagationResult,
    RectifyRequest,
    RectifyResult,
    ScoreOptions,
    ScoreRequest,
    ScoreResult,
    Verification,
)
from initscore.errors import InitscoreError, OptionsError

Progress = Callable[[int, int, dict[str, Any]], None]

__all__ = ["parse_request", "run_job"]


def parse_request(request: Any) -> Any:
    """A contract request model from a model or a JSON-like dict."""
    from pydantic import TypeAdapter

    if isinstance(request, (ScoreRequest, RectifyRequest, BatchRequest, PropagationRequest)):
        return request
    return TypeAdapter(JobRequest).validate_python(dict(request))


def _num_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


_DATA_CAPS: ContextVar[Any] = ContextVar("initscore_data_caps", default=None)  # set by run_job for its data loads


def _load_data(ref: Any, allowed_roots: list[str] | None) -> Any:
    from initscore import data as data_mod

    return data_mod.load(ref, allowed_roots=allowed_roots, caps=_DATA_CAPS.get())


def _build(spec: Any, seed: int) -> Any:
    import torch

    from initscore import models

    torch.manual_seed(seed)
    return models.build(spec.model_dump(mode="json"))


def _score_one(spec: Any, batch: tuple[Any, Any], opts: ScoreOptions) -> ScoreResult:
    from initscore.scores import gradcosine

    t0 = time.perf_counter()
    model = _build(spec, opts.seed)
    gs = gradcosine(model, batch, mode=opts.mode, sub_batches=opts.sub_batches, overlap=opts.overlap, bn=opts.bn)
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


def _run_score(req: ScoreRequest, allowed_roots: list[str] | None) -> ScoreResult:
    td = _load_data(req.data, allowed_roots)
    batch = td.batch(req.data.batch_size, req.data.seed)
    return _score_one(req.model, batch, req.options)


def _run_batch(req: BatchRequest, allowed_roots: list[str] | None, progress: Progress | None) -> BatchResult:
    t0 = time.perf_counter()
    td = _load_data(req.data, allowed_roots)
    batch = td.batch(req.data.batch_size, req.data.seed)
    entries: list[dict[str, Any]] = []
    n = len(req.models)
    for i, spec in enumerate(req.models):
        try:
            res = _score_one(spec, batch, req.options)
            value = _rank_value(res, req.rank_by)
            entries.append({"index": i, "model": spec, "status": "finished", "score": value, "result": res})
        except (InitscoreError, RuntimeError, ValueError) as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            entries.append({"index": i, "model": spec, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if progress is not None:
            progress(i + 1, n, {"arch": spec.arch})
    ranked = sorted((e for e in entries if e.get("score") is not None), key=lambda e: (-e["score"], e["index"]))
    for r, e in enumerate(ranked, start=1):
        e["rank"] = r
    order = ranked + [e for e in entries if e.get("score") is None]
    return BatchResult(rank_by=req.rank_by, entries=[BatchEntry(**e) for e in order], seconds=time.perf_counter() - t0)


def _run_rectify(req: RectifyRequest, allowed_roots: list[str] | None, progress: Progress | None) -> tuple[RectifyResult, dict[str, Any]]:
    from initscore import nio

    opts = req.options
    td = _load_data(req.data, allowed_roots)
    bs = req.data.batch_size
    heldout = None
    train = td
    if opts.heldout_batches > 0:
        n_held = opts.heldout_batches * bs
        if n_held >= len(td.y):
            raise OptionsError(
                f"options.heldout_batches x data.batch_size = {n_held} leaves no training samples of {len(td.y)}; use fewer held-out batches"
            )
        train, held = td.split(n_held, req.data.seed)
        heldout = [(held.x[i * bs:(i + 1) * bs], held.y[i * bs:(i + 1) * bs]) for i in range(opts.heldout_batches)]
    model = _build(req.model, req.init_seed)

    def _prog(it: int, total: int, metrics: Mapping[str, Any]) -> None:
        if progress is not None:
            progress(it, total, dict(metrics))

    rect = nio.rectify(
        model, train.batches(bs, req.data.seed), method=opts.method, iters=opts.iters, lr=opts.lr, gamma=opts.gamma,
        sub_batches=opts.sub_batches, overlap=opts.overlap, mode=opts.mode, min_scale=opts.min_scale,
        optimizer=opts.optimizer, seed=opts.seed, heldout=heldout, progress=_prog, bn=opts.bn,
        gn_weight=opts.gn_weight, gamma_margin=opts.gamma_margin, select=opts.select, grad_clip=opts.grad_clip,
        scale_tensors=opts.scale_tensors, verify_batches=opts.verify_batches,
    )
    result = RectifyResult(
        arch=req.model.arch,
        method=rect.method,
        params=_num_params(model),
        scales={k: float(v) for k, v in rect.scales.items()},
        unscalable=list(rect.unscalable),
        fixed=list(rect.fixed),
        history=[IterationRecord(**{k: h[k] for k in ("it", "gc", "gn", "g_max", "constrained")}) for h in rect.history],
        heldout_before={k: float(v) for k, v in (rect.heldout_before or {}).items()},
        heldout_after={k: float(v) for k, v in (rect.heldout_after or {}).items()},
        gamma=None if rect.gamma is None else float(rect.gamma),
        seconds=float(rect.seconds),
        gamma_margin=float(rect.gamma_margin),
        select=rect.select,
        returned_iterate=rect.returned_iterate,
        final=None if rect.final is None else IterationRecord(**{k: rect.final[k] for k in ("it", "gc", "gn", "g_max", "constrained")}),
        verification=None if rect.verification is None else Verification(**rect.verification),
    )
    return result, dict(rect.state_dict)


def _run_propagation(req: PropagationRequest, allowed_roots: list[str] | None) -> tuple[PropagationResult, bytes | None]:
    from initscore import propagation

    t0 = time.perf_counter()
    td = _load_data(req.data, allowed_roots)
    batch = td.batch(req.data.batch_size, req.data.seed)
    model = _build(req.model, req.options.seed)
    rep = propagation.report(model, batch, seed=req.options.seed)
    png = None
    if req.options.plot:
        fd, path = tempfile.mkstemp(suffix=".png")
        os.close(fd)
        try:
            propagation.plot(rep, path)
            with open(path, "rb") as fh:
                png = fh.read()
        finally:
            os.unlink(path)
    layers = [
        LayerPropagation(name=l.name, depth=int(l.depth), forward_var=float(l.forward_var),
                         backward_var=None if l.backward_var is None else float(l.backward_var))
        for l in rep.layers
    ]
    cka = getattr(rep, "input_output_cka", None)
    return PropagationResult(arch=req.model.arch, layers=layers, input_output_cka=None if cka is None else float(cka),
                             seconds=time.perf_counter() - t0), png


def run_job(
    request: Any, *, progress: Progress | None = None, allowed_roots: list[str] | None = None, data_caps: Any = None
) -> tuple[Any, dict[str, Any] | None, bytes | None]:
    """Run one job request in this process; returns (JobResult, rectified state dict or None, PNG bytes or None).

    `allowed_roots` confines dataset paths again at read time (the API checked them
    already); None means unconfined (library/CLI use). `data_caps` (an
    ``initscore.data.DataCaps``) bounds what the data reference may decode (None: its defaults).
    """
    token = _DATA_CAPS.set(data_caps)
    try:
        return _run_job(request, progress, allowed_roots)
    finally:
        _DATA_CAPS.reset(token)


def _run_job(request: Any, progress: Progress | None, allowed_roots: list[str] | None) -> tuple[Any, dict[str, Any] | None, bytes | None]:
    req = parse_request(request)
    if isinstance(req, ScoreRequest):
        res = _run_score(req, allowed_roots)
        if progress is not None:
            progress(1, 1, {"gc": res.gc, "gn": res.gn})
        return res, None, None
    if isinstance(req, BatchRequest):
        return _run_batch(req, allowed_roots, progress), None, None
    if isinstance(req, RectifyRequest):
        res, weights = _run_rectify(req, allowed_roots, progress)
        return res, weights, None
    if isinstance(req, PropagationRequest):
        res, png = _run_propagation(req, allowed_roots)
        if progress is not None:
            progress(1, 1, {})
        return res, None, png
    raise OptionsError(f"unknown job kind {getattr(req, 'kind', None)!r}")  # pragma: no cover
