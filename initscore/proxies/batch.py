"""Batch scoring of many architectures against one shared data batch (torch).

Each spec is validated, built, scored and freed before the next one, so memory stays
flat over thousands of architectures; a failure of one architecture (bad spec, every
proxy erroring, out of memory) is recorded in its row and the batch goes on.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from initscore.errors import InitscoreError

FULL_GC_EVERY = 64  # architectures between full garbage collections in score_architectures


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
        }


def score_architectures(
    specs: Sequence[Mapping[str, Any]],
    batch: Any,
    names: Sequence[str],
    progress: Callable[[int, int, ArchScores], None] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> list[ArchScores]:
    """Score every spec with the proxies `names` on the same batch; one row per spec, in order.

    The weights of architecture i are drawn after `torch.manual_seed(seed + i)` so a row
    does not depend on which other architectures are in the batch. `progress(i, total, row)`
    is called after each architecture.
    """
    from initscore import models
    from initscore.proxies.engine import _as_batch, _check_names, compute_many

    wanted = _check_names(names)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x, y = batch if isinstance(batch, (tuple, list)) else (batch.x, batch.y)
    x, y = x.to(dev), y.to(dev)
    rows: list[ArchScores] = []
    total = len(specs)
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        model = None
        try:
            entry, args = models.validate_spec(spec)
            torch.manual_seed(seed + i)
            model = entry.builder(**args).to(dev)
            n_params = sum(p.numel() for p in model.parameters())
            timings: dict[str, float] = {}
            values, errors = compute_many(wanted, model, (x, y), timings=timings)
            row = ArchScores(i, dict(spec), values, errors, n_params, time.perf_counter() - t0, timings)
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
        rows.append(row)
        if progress is not None:
            progress(i, total, row)
    return rows
