"""Zero-cost architecture search: the k best of a list of architectures by one score.

    from initscore import search
    best = search.top_k(specs, (x, y), k=5)                       # proxy="ensemble", the recommended score
    best = search.top_k(search.nb201_sample(1000, seed=0), data_ref, k=5, proxy="synflow")

Architectures are scored one at a time (:func:`initscore.proxies.batch.iter_architectures`:
built, scored, freed) and only the k best so far are kept, so memory stays flat over thousands of
cells; ``progress(done, total, best)`` is called after each. A cell that cannot be scored (a
disconnected NAS-Bench-201 cell, a proxy error, a bad spec) is ranked below every scored one and
counted in ``failed`` with its reason; the search goes on.

``proxy`` is any registered proxy (computed alone: the other proxies are not) or ``"az_nas"``,
AZ-NAS's set-level rank aggregation of az_expressivity, az_progressivity, az_trainability and
flops (:mod:`initscore.proxies.aggregate`), which keeps those four numbers per cell until the end.
Scores are deterministic per spec (weights from ``spec_seed(spec, seed)``): the same cell gets the
same score in any list, from the library, the CLI or the service.
"""
from __future__ import annotations

import heapq
import math
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from initscore.errors import OptionsError

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_SIZE = 5 ** 6
SET_LEVEL = ("az_nas",)
MAX_REASONS = 20


def nb201_cell(index: int) -> str:
    """The index-th NAS-Bench-201 cell in this module's enumeration (ops of the 6 edges in base 5)."""
    if not 0 <= index < NB201_SIZE:
        raise OptionsError(f"NB201 cell index must be in 0..{NB201_SIZE - 1}, got {index}")
    ops = []
    for _ in range(6):
        ops.append(NB201_OPS[index % 5])
        index //= 5
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def nb201_sample(n: int, seed: int = 0, **args: Any) -> list[dict[str, Any]]:
    """n distinct NAS-Bench-201 cells drawn with random.Random(seed), as nb201 specs (extra `args` added)."""
    if not 1 <= n <= NB201_SIZE:
        raise OptionsError(f"n must be in 1..{NB201_SIZE}, got {n}")
    return [{"arch": "nb201", "args": {"cell": nb201_cell(i), **args}} for i in random.Random(seed).sample(range(NB201_SIZE), n)]


@dataclass
class Candidate:
    index: int
    spec: Mapping[str, Any]
    score: float
    values: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        score = self.score if math.isfinite(self.score) else None  # an unscorable cell: JSON has no -inf
        return {"index": self.index, "spec": dict(self.spec), "score": score, "values": dict(self.values)}


@dataclass
class SearchResult:
    proxy: str
    k: int
    total: int
    top: list[Candidate]
    failed: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_REASONS failures
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "k": self.k, "total": self.total, "failed": self.failed,
                "top": [c.to_dict() for c in self.top], "reasons": list(self.reasons), "seconds": self.seconds}


def _data(data: Any) -> Any:
    if isinstance(data, Mapping):  # a data reference: one seeded batch, or a fresh batch per spec
        from initscore import data as data_mod

        ref = dict(data)
        fresh = bool(ref.pop("fresh_per_arch", False))
        td = data_mod.load(ref)
        bs = int(ref.get("batch_size") or 64)
        if fresh:
            return lambda s: td.batch(min(bs, len(td)), seed=s)
        return td.batch(min(bs, len(td)), seed=int(ref.get("seed") or 0))
    return data


def top_k(
    specs: Iterable[Mapping[str, Any]],
    data: Any,
    k: int,
    proxy: str = "ensemble",
    *,
    seed: int = 0,
    progress: Callable[[int, int, list[Candidate]], None] | None = None,
    device: Any = None,
) -> SearchResult:
    """The k highest-scoring specs by `proxy` (higher = better), best first.

    `data`: a pair (x, y), a TensorData, a callable ``batch(spec_seed)`` or a data-reference mapping
    (``initscore.contract.DataRef`` fields; ``fresh_per_arch: true`` draws a fresh seeded batch per cell).
    Raises OptionsError for an unknown proxy, an empty list or k outside 1..len(specs).
    """
    import time

    from initscore import proxies
    from initscore.proxies.aggregate import AZ_NAS_INPUTS, log_rank_aggregate
    from initscore.proxies.batch import iter_architectures

    specs = list(specs)
    if proxy not in proxies.PROXIES and proxy not in SET_LEVEL:
        raise OptionsError(f"unknown proxy {proxy!r}; known: {[*proxies.PROXIES, *SET_LEVEL]}")
    if not specs:
        raise OptionsError("no architectures to search")
    if not isinstance(k, int) or not 1 <= k <= len(specs):
        raise OptionsError(f"k must be in 1..{len(specs)} (the number of architectures), got {k}")
    names = list(AZ_NAS_INPUTS) if proxy == "az_nas" else [proxy]
    batch = _data(data)
    t0 = time.perf_counter()
    heap: list[tuple[float, int, Candidate]] = []  # min-heap of the k best so far
    kept: list[tuple[int, Mapping[str, Any], dict[str, float]]] = []  # az_nas: the four inputs per cell
    failed = 0
    reasons: list[dict[str, Any]] = []
    tie = itertools.count()
    for row in iter_architectures(specs, batch, names, seed=seed, device=device):
        reason = row.error or next((f"{n}: {row.errors[n]}" for n in names if n in row.errors), None)
        if reason is not None:
            failed += 1
            if len(reasons) < MAX_REASONS:
                reasons.append({"index": row.index, "reason": reason})
        if proxy == "az_nas":
            kept.append((row.index, specs[row.index], {n: row.values[n] for n in names if n in row.values}))
        elif reason is None:
            cand = Candidate(row.index, specs[row.index], float(row.values[proxy]), dict(row.values))
            # ties keep the earlier architecture (a later one must be strictly better)
            item = (cand.score, -row.index, cand)
            if len(heap) < k:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
        if progress is not None:
            progress(row.index + 1, len(specs), [c for _, _, c in sorted(heap, key=lambda t: t[:2], reverse=True)])
    if proxy == "az_nas":
        agg = log_rank_aggregate({n: [v.get(n) for _, _, v in kept] for n in names})
        order = sorted(range(len(kept)), key=lambda i: (-agg[i], kept[i][0]))[:k]
        top = [Candidate(kept[i][0], kept[i][1], agg[i], kept[i][2]) for i in order]
    else:
        top = [c for _, _, c in sorted(heap, key=lambda t: t[:2], reverse=True)]
        if len(top) < k:  # fewer scorable architectures than k: the unscored ones follow, worst
            taken = {c.index for c in top}
            rest = [i for i in range(len(specs)) if i not in taken][: k - len(top)]
            top += [Candidate(i, specs[i], float("-inf")) for i in rest]
    return SearchResult(proxy, k, len(specs), top, failed, reasons, time.perf_counter() - t0)
