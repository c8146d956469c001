"""Batch scoring of many architectures against one shared data batch (torch).

Each spec is validated, built, scored and freed before the next one, so memory stays
flat over thousands of architectures; a failure of one architecture (bad spec, every
proxy erroring, out of memory) is recorded in its row and the batch goes on.
"""
from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch

from initscore.errors import InitscoreError

FULL_GC_EVERY = 64  # architectures between full garbage collections in score_architectures


def spec_seed(spec: Mapping[str, Any], seed: int = 0) -> int:
    """The torch seed of an architecture's weights: a hash of its canonical spec and the request's seed.

    Canonical = ``{"arch", "args"}`` after :func:`initscore.models.validate_spec` fills the defaults, JSON with
    sorted keys; so the same architecture gets the same weights (and scores) whatever its position in a request
    and whichever path (library, CLI, batch job, search) builds it. 63-bit: sha256(canonical + ':' + seed).
    """
    from initscore import models

    entry, args = models.validate_spec(spec)
    canon = json.dumps({"arch": spec["arch"], "args": args}, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{canon}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def nb201_disconnected(cell: str) -> bool:
    """True when no chain of non-`none` edges leads from the cell's input node 0 to its output node 3.

    Such a cell multiplies its input by zero: the network's output does not depend on the image, every
    data-dependent proxy is degenerate (constant Jacobian, singular kernels), and it trains to chance.
    """
    reach = [True]
    for node in cell.strip("|").split("|+|"):
        edges = [e.split("~") for e in node.strip("|").split("|") if e]
        reach.append(any(op != "none" and reach[int(j)] for op, j in edges))
    return not reach[-1]


DISCONNECTED = "disconnected cell: no path of non-'none' edges from the input node to the output node (ranked worst)"


@dataclass(frozen=True)
class ArchScores:
    """Outcome for one architecture: proxy values and per-proxy errors, or `error` when it could not be scored."""

    index: int
    spec: Mapping[str, Any]
    values: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    params: int | None = None
    seconds: float = 0.0
    timings: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    seed: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "spec": dict(self.spec),
            "values": dict(self.values),
            "errors": dict(self.errors),
            "params": self.params,
            "seconds": self.seconds,
            "timings": dict(self.timings),
            "error": self.error,
            "seed": self.seed,
        }


def iter_architectures(
    specs: Iterable[Mapping[str, Any]],
    batch: Any,
    names: Sequence[str],
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Iterator[ArchScores]:
    """Yield one ArchScores per spec, in order, building/scoring/freeing one architecture at a time (flat memory).

    `batch` is a pair (x, y) (or TensorData) shared by every architecture, or a callable
    ``batch(spec_seed) -> (x, y)`` that draws a fresh batch per architecture from its spec seed (the
    ecosystem's data-loader protocol, reproducible per spec).
    """
    from initscore import models
    from initscore.proxies.engine import _check_names, compute_many

    wanted = _check_names(names)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    fresh = callable(batch)
    if not fresh:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch.x, batch.y)
        x, y = x.to(dev), y.to(dev)
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        model = None
        try:
            entry, args = models.validate_spec(spec)
            s_seed = spec_seed(spec, seed)
            if spec.get("arch") == "nb201" and nb201_disconnected(str(args["cell"])):
                row = ArchScores(i, dict(spec), error=DISCONNECTED, seconds=time.perf_counter() - t0, seed=s_seed)
            else:
                if fresh:
                    xb, yb = batch(s_seed)
                    xb, yb = xb.to(dev), yb.to(dev)
                else:
                    xb, yb = x, y
                torch.manual_seed(s_seed)
                model = entry.builder(**args).to(dev)
                n_params = sum(p.numel() for p in model.parameters())
                timings: dict[str, float] = {}
                values, errors = compute_many(wanted, model, (xb, yb), timings=timings)
                row = ArchScores(i, dict(spec), values, errors, n_params, time.perf_counter() - t0, timings, seed=s_seed)
        except InitscoreError as exc:
            row = ArchScores(i, dict(spec) if isinstance(spec, Mapping) else {}, error=str(exc), seconds=time.perf_counter() - t0)
        except (RuntimeError, MemoryError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            row = ArchScores(i, dict(spec), error=f"{type(exc).__name__}: {first}", seconds=time.perf_counter() - t0)
        finally:
            del model
            # the models and the proxies' copies are freed by reference counting; what torch.func leaves in
            # reference cycles (pytree closures) is young: collect the two young generations per architecture
            # (well under a millisecond) and everything every FULL_GC_EVERY (a full collection is ~80 ms)
            gc.collect(1 if (i + 1) % FULL_GC_EVERY else 2)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        yield row


def score_architectures(
    specs: Sequence[Mapping[str, Any]],
    batch: Any,
    names: Sequence[str],
    progress: Callable[[int, int, ArchScores], None] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> list[ArchScores]:
    """Score every spec with the proxies `names`; one row per spec, in order (see iter_architectures).

    The weights of an architecture are drawn after `torch.manual_seed(spec_seed(spec, seed))`, so a row
    depends on its spec and `seed` only, not on its position or the other architectures. A disconnected
    NAS-Bench-201 cell is not scored: its row has `error` = DISCONNECTED (ranked worst by the callers).
    `progress(i, total, row)` is called after each architecture.
    """
    rows: list[ArchScores] = []
    total = len(specs)
    for row in iter_architectures(specs, batch, names, seed=seed, device=device):
        rows.append(row)
        if progress is not None:
            progress(row.index, total, row)
    return rows
