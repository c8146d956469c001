"""`compute` / `compute_many`: run the requested proxies with shared passes (torch).

Groups that share work:
  gradient pass     grad_norm, snip, grasp, fisher, jacob_cov, naswot: ONE forward (ReLU hooks
                    for naswot, conv-output hooks for fisher), the loss backward (grad_norm, snip,
                    fisher; with create_graph and one Hessian-vector product when grasp is asked),
                    one input-gradient backward for jacob_cov
  per-sample pass   gradsign, gradcosine, gradnorm: ONE vmap(grad) pass (per_sample.py)
  zico              S sub-batch forward/backward passes (zico.py)
  meco              one forward of one sample with hooks on every module (meco, meco_opt)
  swap              one no-grad forward of a N(0,1) copy on 16 samples (swap, swap_reg)
  az_nas            one forward keeping the block outputs + block VJPs (az_expressivity/progressivity/trainability)
  ensemble          reuses its inputs' values of the same call
  alone             synflow (|W| float64 copy without BN), zen (Gaussian re-init copy), params, flops, l2_norm
The groups are the builders of initscore.proxies.registry.
A proxy's value is the same alone or inside any group (tests/proxies).
Every group works on a private copy (or never writes), so the caller's model is
unchanged. An error in one group is reported for its proxies and the others go on;
an out-of-memory retries the group with the batch split in 2, 4, ... chunks.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from initscore.errors import InitscoreError, OptionsError, ResourceError, is_out_of_memory
from initscore.proxies import PROXIES
from initscore.proxies.common import model_device

Batch = tuple[torch.Tensor, torch.Tensor]


def _check_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        if n not in PROXIES:
            raise OptionsError(f"unknown proxy {n!r}; known: {list(PROXIES)}")
        if n not in out:
            out.append(n)
    if not out:
        raise OptionsError("no proxy requested")
    return out


def _as_batch(batch: Any, model: nn.Module) -> Batch:
    if hasattr(batch, "x") and hasattr(batch, "y"):  # initscore.data.TensorData
        batch = (batch.x, batch.y)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise OptionsError("a batch is a pair (inputs, targets) of tensors")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise OptionsError("a batch is a pair (inputs, targets) of tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise OptionsError(f"inputs ({x.shape[0]}) and targets ({y.shape[0]}) must have the same non-zero batch size")
    dev = model_device(model)
    return x.detach().to(dev, torch.float32), y.detach().to(dev, torch.long)


def _plan(names: list[str]) -> list[tuple[tuple[str, ...], Callable[..., Any]]]:
    """One (proxies, pass) entry per registered builder, in the order the names first need it."""
    from initscore.proxies.registry import REGISTRY, builder_fn

    groups: dict[str, list[str]] = {}
    for n in names:
        b = REGISTRY[n].builder
        if b != "combined":
            groups.setdefault(b, []).append(n)
    plan: list[tuple[tuple[str, ...], Callable[..., Any]]] = []
    for b, members in groups.items():
        fn = builder_fn(b)
        ns = tuple(members)
        plan.append((ns, lambda m, x, y, c, fn=fn, ns=ns: fn(m, x, y, ns, chunks=c)))
    return plan


def _run_group(fn: Callable[..., Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
    """Run one group; on out-of-memory retry with the batch in 2, 4, ... chunks (ResourceError at one sample per chunk)."""
    chunks = 1
    while True:
        try:
            return fn(model, x, y, chunks)
        except Exception as exc:  # noqa: BLE001 - only OOM is retried
            if not is_out_of_memory(exc):
                raise
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if chunks >= x.shape[0]:
            raise ResourceError(f"out of memory even with one sample per chunk (batch {x.shape[0]}); use a smaller model or batch")
        chunks = min(chunks * 2, x.shape[0])


def _compute(
    wanted: list[str], model: nn.Module, batch: Any, timings: dict[str, float] | None
) -> tuple[dict[str, float], dict[str, Exception]]:
    x, y = _as_batch(batch, model)
    values: dict[str, float] = {}
    errors: dict[str, Exception] = {}
    base = [n for n in wanted if n != "ensemble"]
    if "ensemble" in wanted:
        from initscore.proxies.ensemble import INPUTS

        base += [n for n in INPUTS if n not in base]
    for group, fn in _plan(base):
        t0 = time.perf_counter()
        try:
            out = _run_group(fn, model, x, y)
            if isinstance(out, tuple):  # the shared passes return (values, errors)
                values.update(out[0])
                errors.update(out[1])
            else:
                values.update(out)
        except InitscoreError as exc:
            errors.update({n: exc for n in group})
        except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, NotImplementedError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            err = OptionsError(f"proxy {'/'.join(group)} failed on this model: {type(exc).__name__}: {first}")
            errors.update({n: err for n in group})
        finally:
            if timings is not None:
                timings["+".join(group)] = time.perf_counter() - t0
    if "ensemble" in wanted:
        from initscore.proxies.ensemble import INPUTS, ensemble_score

        missing = [n for n in INPUTS if n not in values]
        if missing:
            errors["ensemble"] = type(errors[missing[0]])(
                f"proxy 'ensemble' needs {missing}: " + "; ".join(str(errors[n]) for n in missing)
            )
        else:
            values["ensemble"] = ensemble_score({n: values[n] for n in INPUTS})
    # no gc.collect() here: a full collection costs ~80 ms with torch loaded (more than synflow on an NB201
    # cell), and the copies are freed by reference counting (bn.tree_copy makes no cycles; tests/proxies)
    return {n: values[n] for n in wanted if n in values}, {n: errors[n] for n in wanted if n in errors}


def compute_many(
    names: Iterable[str], model: nn.Module, batch: Any, *, timings: dict[str, float] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Compute several proxies, sharing passes. Returns (values, errors), each keyed by proxy name.

    Unknown names or a malformed batch raise OptionsError; anything that goes wrong for a
    proxy on this model (NaN/inf, missing layer types, out of memory) lands in `errors`
    as a one-line message. `timings`, when given, receives the seconds spent per group
    (keyed by the group's proxies joined with '+').
    """
    values, errors = _compute(_check_names(names), model, batch, timings)
    return values, {n: str(e) for n, e in errors.items()}


def compute(name: str, model: nn.Module, batch: Any) -> float:
    """One proxy value; raises the proxy's error (an InitscoreError such as NonFiniteError) instead of returning it."""
    values, errors = _compute(_check_names([name]), model, batch, None)
    if name in errors:
        raise errors[name]
    return values[name]
