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

Resumable: with ``checkpoint`` (an object with ``load() -> dict | None`` and ``save(dict)``; :class:`FileCheckpoint`
is a JSON file, the worker backs one by its artifact store) the state of the scan -- how many architectures are done
(they are scored in order), the k best so far, the failure count and the first reasons, and for ``az_nas`` the four
inputs of every cell -- is saved every :data:`CHECKPOINT_EVERY_CELLS` architectures or :data:`CHECKPOINT_EVERY_S`
seconds (whichever comes first, but never more often than 20x the time one save takes), and a later call with the
same specs, proxy, seed, k and ``identity`` restarts after the last saved architecture instead of scoring the
finished ones again (a finished scan saves its final state, so running it again scores nothing). A checkpoint
that cannot be read, is not a checkpoint, or belongs to another search is ignored with a warning (the scan starts
over). The result counts ``resumed`` (taken from the checkpoint) and ``scored``
(scored by this call) architectures.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from initscore.contract import NB201_CELLS, SEARCH_SET_LEVEL
from initscore.errors import OptionsError
from initscore.files import write_atomically

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_SIZE = NB201_CELLS  # declared once, in the contract (its sample.n bound)
SET_LEVEL = SEARCH_SET_LEVEL
MAX_REASONS = 20
CHECKPOINT_EVERY_CELLS = 25
CHECKPOINT_EVERY_S = 10.0
CHECKPOINT_VERSION = 1

log = logging.getLogger("initscore.search")


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


def candidates(request: Any) -> list[dict[str, Any]]:
    """The architectures of a ``contract.SearchRequest`` (or its JSON dict), in order, as spec dicts (torch-free):
    its ``models``, its NB201 ``cells`` (each ``{"arch": "nb201", "args": {"cell": c, **args}}``), or the
    ``sample`` of its search space (:func:`nb201_sample` with ``sample_seed`` and ``args``)."""
    req = request if isinstance(request, Mapping) else request.model_dump(mode="json")
    if req.get("models"):
        return [{"arch": m["arch"], "args": dict(m.get("args") or {})} for m in req["models"]]
    args = dict(req.get("args") or {})
    if req.get("cells"):
        return [{"arch": "nb201", "args": {"cell": c, **args}} for c in req["cells"]]
    sample = req.get("sample")
    if not sample:
        raise OptionsError("a search needs models, cells or sample")
    if sample.get("space", "nb201") != "nb201":
        raise OptionsError(f"unknown search space {sample.get('space')!r}; known: ['nb201']")
    return nb201_sample(int(sample["n"]), int(sample.get("sample_seed") or 0), **args)


def candidate_problems(request: Any, limit: int = 20) -> list[dict[str, str]]:
    """Candidates of a search request that are not valid specs, as ``{"loc", "msg"}`` (at most `limit`; torch-free):
    ``models[i]``, ``cells[i]``, or ``args`` when the arguments break every sampled cell."""
    from initscore.errors import InitscoreError
    from initscore.models import validate_spec

    req = request if isinstance(request, Mapping) else request.model_dump(mode="json")
    where = "models" if req.get("models") else "cells" if req.get("cells") else "args"
    out: list[dict[str, str]] = []
    for i, spec in enumerate(candidates(req)):
        try:
            validate_spec(spec)
        except InitscoreError as exc:
            out.append({"loc": f"{where}[{i}]" if where != "args" else "args", "msg": str(exc)})
            if where == "args" or len(out) >= limit:
                break
    return out


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
    scored: int = 0   # architectures scored by this call
    resumed: int = 0  # architectures taken from a checkpoint (not scored again)

    def to_dict(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "k": self.k, "total": self.total, "failed": self.failed,
                "top": [c.to_dict() for c in self.top], "reasons": list(self.reasons), "seconds": self.seconds,
                "scored": self.scored, "resumed": self.resumed}

    def to_result(self) -> Any:
        """This result as the job contract's ``SearchResult`` (what a search job returns)."""
        from initscore.contract import SearchResult as Result

        d = self.to_dict()
        d["top"] = [{"index": c["index"], "model": c["spec"], "score": c["score"], "values": c["values"]} for c in d["top"]]
        return Result.model_validate(d)


class FileCheckpoint:
    """A search checkpoint in one JSON file, replaced atomically (temporary file, fsync, ``os.replace``), so a crash
    mid-write leaves the previous checkpoint; ``load`` returns None (with a warning) for a missing, truncated or
    non-JSON file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as fh:
                doc = json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("search checkpoint %s is unreadable (%s); starting over", self.path, exc)
            return None
        if not isinstance(doc, dict):
            log.warning("search checkpoint %s is not a checkpoint (a JSON %s); starting over", self.path, type(doc).__name__)
            return None
        return doc

    def save(self, state: Mapping[str, Any]) -> None:
        write_atomically(self.path, json.dumps(state, separators=(",", ":"), allow_nan=False).encode(),
                         prefix=".checkpoint-")


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


def _search_key(specs: list[Mapping[str, Any]], proxy: str, seed: int, k: int, identity: str) -> str:
    """What a checkpoint must match to be resumed: the specs in order, proxy, seed, k and the caller's identity."""
    blob = json.dumps({"specs": specs, "proxy": proxy, "seed": seed, "k": k, "identity": identity},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _restore(doc: Any, key: str, specs: list[Mapping[str, Any]], k: int, proxy: str) -> dict[str, Any] | None:
    """The scan state of a checkpoint document, or None (with a warning) when it is not a usable one."""
    if doc is None:
        return None
    try:
        if doc.get("version") != CHECKPOINT_VERSION or doc.get("key") != key:
            log.warning("search checkpoint belongs to another search (or version); starting over")
            return None
        done = int(doc["done"])
        if not 0 <= done <= len(specs):
            raise ValueError(f"done={done}")
        top = [(float(c["score"]), int(c["index"]), {str(n): float(v) for n, v in c["values"].items()}) for c in doc["top"]]
        if len(top) > k or any(not 0 <= i < done for _, i, _ in top):
            raise ValueError("top entries outside the finished architectures")
        kept = [(int(i), {str(n): float(v) for n, v in vals.items()}) for i, vals in doc.get("kept") or []]
        if proxy == "az_nas" and len(kept) != done:
            raise ValueError("az_nas inputs missing")
        reasons = [{"index": int(r["index"]), "reason": str(r["reason"])} for r in doc.get("reasons") or []]
        return {"done": done, "top": top, "kept": kept, "failed": int(doc.get("failed", 0)), "reasons": reasons}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("search checkpoint is malformed (%s); starting over", exc)
        return None


def top_k(
    specs: Iterable[Mapping[str, Any]],
    data: Any,
    k: int,
    proxy: str = "ensemble",
    *,
    seed: int = 0,
    progress: Callable[[int, int, list[Candidate]], None] | None = None,
    device: Any = None,
    checkpoint: Any = None,
    identity: str = "",
) -> SearchResult:
    """The k highest-scoring specs by `proxy` (higher = better), best first.

    `data`: a pair (x, y), a TensorData, a callable ``batch(spec_seed)`` or a data-reference mapping
    (``initscore.contract.DataRef`` fields; ``fresh_per_arch: true`` draws a fresh seeded batch per cell).
    `checkpoint`: an object with ``load()``/``save(state)`` (module docstring) to resume an interrupted scan;
    `identity`: a string the checkpoint must also match (the job driver passes the request's content hash,
    which covers the data reference).
    Raises OptionsError for an unknown proxy, an empty list or k outside 1..len(specs).
    """
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
    t0 = time.perf_counter()
    heap: list[tuple[float, int, Candidate]] = []  # min-heap of the k best so far: (score, -index, candidate)
    kept: list[tuple[int, dict[str, float]]] = []  # az_nas: the four inputs per cell
    failed = 0
    reasons: list[dict[str, Any]] = []
    start = 0
    key = _search_key(specs, proxy, seed, k, identity) if checkpoint is not None else ""
    if checkpoint is not None:
        state = _restore(checkpoint.load(), key, specs, k, proxy)
        if state is not None:
            start, failed, reasons, kept = state["done"], state["failed"], state["reasons"], state["kept"]
            heap = [(sc, -i, Candidate(i, specs[i], sc, vals)) for sc, i, vals in state["top"]]
            heapq.heapify(heap)
            log.info("search resumed after %d of %d architectures from its checkpoint", start, len(specs))

    def best() -> list[Candidate]:
        return [c for _, _, c in sorted(heap, key=lambda t: t[:2], reverse=True)]

    def state_doc(done: int) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "key": key, "done": done, "failed": failed, "reasons": reasons,
                "top": [{"index": c.index, "score": c.score, "values": c.values} for c in best()],
                "kept": [[i, v] for i, v in kept]}

    if progress is not None and start:
        progress(start, len(specs), best())
    last_save, save_cost, since = time.monotonic(), 0.0, 0
    scored = 0
    batch = _data(data) if start < len(specs) else None
    rows = iter_architectures(specs[start:], batch, names, seed=seed, device=device) if batch is not None else ()
    for row in rows:
        index = start + row.index
        scored += 1
        reason = row.error or next((f"{n}: {row.errors[n]}" for n in names if n in row.errors), None)
        if reason is not None:
            failed += 1
            if len(reasons) < MAX_REASONS:
                reasons.append({"index": index, "reason": reason})
        if proxy == "az_nas":
            kept.append((index, {n: float(row.values[n]) for n in names if n in row.values}))
        elif reason is None:
            cand = Candidate(index, specs[index], float(row.values[proxy]), {n: float(v) for n, v in row.values.items()})
            # ties keep the earlier architecture (a later one must be strictly better)
            item = (cand.score, -index, cand)
            if len(heap) < k:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
        since += 1
        if checkpoint is not None and index + 1 < len(specs):
            now = time.monotonic()
            if (since >= CHECKPOINT_EVERY_CELLS or now - last_save >= CHECKPOINT_EVERY_S) and now - last_save >= 20 * save_cost:
                checkpoint.save(state_doc(index + 1))
                save_cost = time.monotonic() - now
                last_save, since = time.monotonic(), 0
        if progress is not None:
            progress(index + 1, len(specs), best())
    if checkpoint is not None and scored:  # finished: running the same search again answers from the checkpoint
        checkpoint.save(state_doc(len(specs)))
    if proxy == "az_nas":
        agg = log_rank_aggregate({n: [v.get(n) for _, v in kept] for n in names})
        order = sorted(range(len(kept)), key=lambda i: (-agg[i], kept[i][0]))[:k]
        top = [Candidate(kept[i][0], specs[kept[i][0]], agg[i], kept[i][1]) for i in order]
    else:
        top = best()
        if len(top) < k:  # fewer scorable architectures than k: the unscored ones follow, worst
            taken = {c.index for c in top}
            rest = [i for i in range(len(specs)) if i not in taken][: k - len(top)]
            top += [Candidate(i, specs[i], float("-inf")) for i in rest]
    return SearchResult(proxy, k, len(specs), top, failed, reasons, time.perf_counter() - t0, scored, start)
