"""Deployment limits on a job request, checked in the API before anything is queued (torch-free).

The contract (``initscore.contract``) checks intrinsic ranges and the rules across a request's fields
(``request_problems``: pairs of samples, sub_batches <= batch_size, top_k, rank_by); here we check what
depends on the deployment (:class:`initscore.server.settings.Settings`): registered
architecture and its arguments (``initscore.models.validate_spec``), the parameter
cap (the pure-Python ``num_params``), batch size, iterations, models per batch,
input size, known proxy names, and dataset-root confinement (realpath under one of
``allowed_roots``; ``..`` and symlink escapes are rejected). All problems are
collected and reported together as one 422 problem+json with an ``errors`` list; when
the body also breaks the contract, :func:`parts_of_body` gives the parts that still
parse so that their problems are listed beside the contract's (see routes/jobs.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ValidationError

from initscore.contract import (
    BatchRequest,
    DataRef,
    ModelSpec,
    PropagationOptions,
    RectifyOptions,
    ScoreOptions,
    SearchRequest,
    request_problems,
)
from initscore.errors import InitscoreError
from initscore.models import get_entry, validate_spec
from service.problems import ProblemError
from initscore.server.settings import Settings

def known_proxies() -> tuple[str, ...]:
    """Proxy names from the torch-free ``initscore.proxies.PROXIES`` (empty if that module is absent)."""
    try:
        from initscore.proxies import PROXIES
    except ImportError:
        return ()
    return tuple(PROXIES)


def _confine(root: str, allowed: Iterable[str]) -> str | None:
    """Fallback confinement when ``initscore.dataref`` is absent: an error message or None."""
    if "\x00" in root:
        return "data root contains a NUL byte"
    real = os.path.realpath(os.path.expanduser(root))
    for a in allowed:
        ra = os.path.realpath(a)
        if real == ra or os.path.commonpath([real, ra]) == ra:
            return None if os.path.exists(real) else f"data root {root!r} does not exist"
    return f"data path {root!r} is outside the allowed dataset roots; use a path under one of the configured roots"


def check_data(ref: DataRef, settings: Settings, errors: list[dict[str, Any]]) -> None:
    if ref.batch_size > settings.max_batch_size:
        errors.append({"loc": "data.batch_size", "msg": f"batch_size {ref.batch_size} is over the limit of {settings.max_batch_size}; use a smaller batch"})
    if ref.kind == "synthetic" and ref.shape:
        elems = ref.batch_size * math.prod(ref.shape)
        if elems > settings.max_input_elements:
            errors.append({"loc": "data.shape", "msg": f"batch_size x prod(shape) = {elems} is over the limit of {settings.max_input_elements}"})
    if ref.kind != "synthetic" and ref.root is not None:
        try:
            from initscore.dataref import validate_ref
        except ImportError:
            msg = _confine(ref.root, settings.allowed_roots)
            if msg:
                errors.append({"loc": "data.root", "msg": msg})
        else:
            try:
                validate_ref(ref, settings.allowed_roots)
            except InitscoreError as exc:
                errors.append({"loc": "data.root", "msg": str(exc)})


_KIND_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion-mnist": 10}


def check_classes(spec: Any, loc: str, ref: DataRef, errors: list[dict[str, Any]]) -> None:
    """Labels of the data must index the model's outputs: data classes <= the model's num_classes."""
    data_classes = ref.num_classes if ref.num_classes is not None else _KIND_CLASSES.get(ref.kind)
    try:
        _, args = validate_spec(spec.model_dump(mode="json"))
    except InitscoreError:
        return  # reported by check_model
    model_classes = args.get("num_classes") if isinstance(args, dict) else None
    if isinstance(data_classes, int) and isinstance(model_classes, int) and data_classes > model_classes:
        errors.append({"loc": "data.num_classes", "msg": f"the data has {data_classes} classes but {loc} ({spec.arch}) has "
                       f"{model_classes} outputs; set {loc}.args.num_classes to at least {data_classes}"})


def check_model(spec: Any, loc: str, settings: Settings, errors: list[dict[str, Any]],
                model_visible: Callable[[str], bool] | None = None) -> None:
    try:
        entry, args = validate_spec(spec.model_dump(mode="json"))
        n = entry.num_params(args)
    except InitscoreError as exc:
        errors.append({"loc": loc, "msg": str(exc)})
        return
    if entry.family == "onnx" and not (model_visible is not None and model_visible(args["sha256"])):
        errors.append({"loc": f"{loc}.args.sha256", "msg": f"no uploaded model {args['sha256']} for this key; upload the "
                                                           ".onnx file first (POST /v1/models, initscore upload)"})
    if n is not None and n > settings.max_params:
        errors.append({"loc": f"{loc}.args", "msg": f"{spec.arch} with these arguments has {n:,} parameters, over the cap of {settings.max_params:,}; choose a smaller model"})


@dataclass
class Parts:
    """The parts of a job request that the deployment checks read; a part is None when it breaks the contract.

    ``specs`` pairs each model spec with its location (``model`` or ``models[i]``); ``n_models`` is the length
    of a batch's ``models`` list (None for single-model kinds); ``kind`` is None when the body names no known kind.
    """

    kind: str | None
    specs: list[tuple[str, ModelSpec]] = field(default_factory=list)
    n_models: int | None = None
    data: DataRef | None = None
    options: Any = None
    top_k: int | None = None
    rank_by: str | None = None
    search: dict[str, Any] | None = None  # a search request's candidate fields (models / cells / sample, args)


_OPTIONS: dict[str, type[BaseModel]] = {"score": ScoreOptions, "rectify": RectifyOptions, "batch": ScoreOptions,
                                        "propagation": PropagationOptions}


def parts_of_request(req: Any) -> Parts:
    """The parts of a request that passed the contract."""
    if isinstance(req, SearchRequest):  # the candidates are checked by check_search, not one by one as specs
        return Parts(req.kind, data=req.data, search=req.model_dump(mode="json", include={"models", "cells", "sample", "args"}))
    if isinstance(req, BatchRequest):
        return Parts(req.kind, [(f"models[{i}]", s) for i, s in enumerate(req.models)], len(req.models), req.data,
                     req.options, req.top_k, req.rank_by)
    return Parts(req.kind, [("model", req.model)], None, req.data, req.options)


def _part(model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def parts_of_body(body: Any) -> Parts:
    """The parts of a raw JSON body that pass the contract on their own (each validated alone), for a body
    that broke the contract elsewhere; so that the deployment's problems can be listed beside the contract's."""
    if not isinstance(body, dict):
        return Parts(None)
    kind = body.get("kind", "score")
    kind = kind if isinstance(kind, str) and (kind in _OPTIONS or kind == "search") else None
    parts = Parts(kind)
    if kind == "search":
        parts.search = {n: body[n] for n in ("models", "cells", "sample", "args") if n in body}
    if kind != "batch" and "model" in body:
        spec = _part(ModelSpec, body["model"])
        parts.specs = [("model", spec)] if spec is not None else []
    models = body.get("models")
    if kind in ("batch", None) and isinstance(models, list):
        parts.n_models = len(models)
        parsed = [(f"models[{i}]", _part(ModelSpec, m)) for i, m in enumerate(models)]
        parts.specs += [(loc, s) for loc, s in parsed if s is not None]
    if "data" in body:
        parts.data = _part(DataRef, body["data"])
    if kind in _OPTIONS:
        parts.options = _part(_OPTIONS[kind], body.get("options", {}))
    if kind == "batch":
        top_k, rank_by = body.get("top_k"), body.get("rank_by", "ensemble")
        parts.top_k = top_k if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1 else None
        parts.rank_by = rank_by if isinstance(rank_by, str) else None
    return parts


def deployment_problems(parts: Parts, settings: Settings, model_visible: Callable[[str], bool] | None = None
                        ) -> list[dict[str, Any]]:
    """Every deployment limit the given parts break, as ``{"loc", "msg"}`` entries; parts that are None are skipped.
    ``model_visible(sha256)`` says whether the caller may use an ONNX upload (None: no uploads are visible)."""
    errors: list[dict[str, Any]] = []
    if parts.n_models is not None and parts.n_models > settings.max_batch_models:
        errors.append({"loc": "models", "msg": f"{parts.n_models} models is over the limit of {settings.max_batch_models} per batch; split the sweep"})
    else:
        for loc, spec in parts.specs:
            check_model(spec, loc, settings, errors, model_visible)
            if parts.data is not None:
                check_classes(spec, loc, parts.data, errors)
    if parts.data is not None:
        check_data(parts.data, settings, errors)
    if parts.search is not None:
        check_search(parts.search, parts.data, settings, errors)

    opts = parts.options
    if isinstance(opts, RectifyOptions) and opts.iters > settings.max_iters:
        errors.append({"loc": "options.iters", "msg": f"iters {opts.iters} is over the limit of {settings.max_iters}"})
    if isinstance(opts, ScoreOptions):
        known = known_proxies()
        for j, name in enumerate(opts.proxies):
            if name not in known:
                errors.append({"loc": f"options.proxies[{j}]", "msg": f"unknown proxy {name!r}; known: {list(known)}"})
    # the request's own rules across its fields (initscore.contract.request_problems): a body that parsed has
    # passed them already; on the parts of one that broke the contract they are checked here, so that they
    # are listed beside the rest (the problem lists a repeated entry once)
    for loc, msg, _ in request_problems(parts.kind, parts.data, opts, n_models=parts.n_models, top_k=parts.top_k,
                                        rank_by=parts.rank_by):
        errors.append({"loc": ".".join(map(str, loc)), "msg": msg})
    return errors


def check_search(search: dict[str, Any], data: DataRef | None, settings: Settings, errors: list[dict[str, Any]],
                 limit: int = 5) -> None:
    """A search request's candidates: valid specs (``models[i]``, ``cells[i]``, or ``args`` for a sample), each under
    the parameter cap, with at least the data's classes; at most `limit` entries are reported per rule."""
    from initscore import search as search_mod

    try:
        specs = search_mod.candidates(search)
        bad = search_mod.candidate_problems(search, limit=limit)
    except (InitscoreError, KeyError, TypeError, ValueError, AttributeError):
        return  # the candidate fields break the contract: reported there
    if bad:
        errors.extend(bad)
        return
    where = "models" if search.get("models") else "cells" if search.get("cells") else "sample"
    over, classes = 0, 0
    for i, raw in enumerate(specs):
        loc = f"{where}[{i}]" if where != "sample" else "sample"
        spec = ModelSpec.model_validate(raw)
        found: list[dict[str, Any]] = []
        if spec.arch == "onnx":  # a search builds registered architectures from their seed, not uploads
            errors.append({"loc": loc, "msg": "a search job scores registered architectures; score an uploaded ONNX "
                                              "model with a score or batch job"})
            break
        if over < limit:
            check_model(spec, loc, settings, found)
            over += len(found)
        if data is not None and classes < 1:
            before = len(found)
            check_classes(spec, loc, data, found)
            classes += len(found) - before
        errors.extend(found)
        if over >= limit and (classes or data is None or where != "models"):
            break


def problem_detail(errors: list[dict[str, Any]]) -> str:
    """The problem's one-line ``detail``: the first five ``loc: msg`` entries and how many more there are."""
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return detail


def check_request(req: Any, settings: Settings, model_visible: Callable[[str], bool] | None = None) -> None:
    """Raise a 422 :class:`ProblemError` listing every limit the request breaks; ``model_visible(sha256)`` says
    whether the caller may use an ONNX upload (None: no uploads are visible)."""
    errors = deployment_problems(parts_of_request(req), settings, model_visible)
    if errors:
        raise ProblemError(422, "Invalid request", problem_detail(errors), slug="validation-error", errors=errors)
