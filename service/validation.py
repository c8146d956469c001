"""Deployment limits on a job request, checked in the API before anything is queued (torch-free).

The contract (``initscore.contract``) checks intrinsic ranges; here we check what
depends on the deployment (:class:`initscore.server.settings.Settings`): registered
architecture and its arguments (``initscore.models.validate_spec``), the parameter
cap (the pure-Python ``num_params``), batch size, iterations, models per batch,
input size, known proxy names, and dataset-root confinement (realpath under one of
``allowed_roots``; ``..`` and symlink escapes are rejected). All problems are
collected and reported together as one 422 problem+json with an ``errors`` list.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable

from initscore.contract import BatchRequest, DataRef, RectifyRequest
from initscore.errors import InitscoreError
from initscore.models import get_entry, validate_spec
from service.problems import ProblemError
from initscore.server.settings import Settings

RANK_BUILTINS = ("gradcosine", "gradnorm")


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


def check_data(ref: DataRef, settings: Settings, errors: list[dict[str, Any]], *, needs_pairs: bool = True) -> None:
    if ref.batch_size > settings.max_batch_size:
        errors.append({"loc": "data.batch_size", "msg": f"batch_size {ref.batch_size} is over the limit of {settings.max_batch_size}; use a smaller batch"})
    if needs_pairs and ref.batch_size < 2:
        errors.append({"loc": "data.batch_size", "msg": "GradCosine compares at least 2 samples; use batch_size >= 2"})
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


def check_request(req: Any, settings: Settings, model_visible: Callable[[str], bool] | None = None) -> None:
    """Raise a 422 :class:`ProblemError` listing every limit the request breaks; ``model_visible(sha256)`` says
    whether the caller may use an ONNX upload (None: no uploads are visible)."""
    errors: list[dict[str, Any]] = []
    if isinstance(req, BatchRequest):
        if len(req.models) > settings.max_batch_models:
            errors.append({"loc": "models", "msg": f"{len(req.models)} models is over the limit of {settings.max_batch_models} per batch; split the sweep"})
        else:
            for i, spec in enumerate(req.models):
                check_model(spec, f"models[{i}]", settings, errors, model_visible)
                check_classes(spec, f"models[{i}]", req.data, errors)
    else:
        check_model(req.model, "model", settings, errors, model_visible)
        check_classes(req.model, "model", req.data, errors)
    check_data(req.data, settings, errors, needs_pairs=req.kind in ("score", "batch", "rectify"))

    opts = req.options
    if isinstance(req, RectifyRequest):
        if opts.iters > settings.max_iters:
            errors.append({"loc": "options.iters", "msg": f"iters {opts.iters} is over the limit of {settings.max_iters}"})
    if req.kind in ("score", "batch"):
        if opts.mode == "batch" and opts.sub_batches > req.data.batch_size:
            errors.append({"loc": "options.sub_batches", "msg": f"sub_batches {opts.sub_batches} exceeds data.batch_size {req.data.batch_size}"})
        known = known_proxies()
        for j, name in enumerate(opts.proxies):
            if name not in known:
                errors.append({"loc": f"options.proxies[{j}]", "msg": f"unknown proxy {name!r}; known: {list(known)}"})
    if isinstance(req, BatchRequest):
        if req.top_k is not None and req.top_k > len(req.models):
            errors.append({"loc": "top_k", "msg": f"top_k {req.top_k} is larger than the {len(req.models)} models"})
        allowed = set(RANK_BUILTINS) | set(opts.proxies) | {"ensemble"}
        if req.rank_by not in allowed:
            errors.append({"loc": "rank_by", "msg": f"rank_by {req.rank_by!r} must be one of {sorted(allowed)} (a proxy must also be listed in options.proxies)"})
    if errors:
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
        if len(errors) > 5:
            detail += f"; and {len(errors) - 5} more"
        raise ProblemError(422, "Invalid request", detail, slug="validation-error", errors=errors)
