"""The named transitions of a job record: start, finish, fail, cancel, requeue (torch-free).

Every transition is one compare-and-set on the record in the index (``JobIndex.update``): it
applies only when the record is in one of the states it leaves from, belongs to ``attempt``
(when given) and passes the optional ``guard`` (evaluated inside the compare-and-set, so a
heartbeat or cancel flag is read against the record that is written). The caller that wins
then writes the durable copy once (:func:`persist`) and emits one event (a log line; finish
and fail with a run time also add it to the index's duration histogram). A caller that loses
-- the record moved on: another worker, the reaper or a cancel got there first -- gets None
and nothing else happens.

::

    queued --start--> running --finish--> finished
       |                 |------fail----> failed
       |                 |------cancel--> cancelled
       |<----requeue-----|   (the reaper: a dead worker's attempt, while attempt < max_attempts)
       |------cancel (while queued) / fail (RQ failed it) / requeue (a worker died between dequeue and start)

Used by the API (cancel), the worker and the inline backend (start, finish, fail, cancel) and
the reaper (requeue, fail).

A search job's transition into a final state (finished, failed, cancelled) also removes its checkpoint
(artifact-store ref ``checkpoints/<job id>``, written by the worker while a search scans): the job will not run
again, whoever ended it. A requeue keeps it, so that the next attempt resumes from it.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Collection

from initscore.contract import FINAL_STATES, JOB_STATES
from initscore.server.index import JobIndex
from initscore.server.records import JobError, JobRecord
from initscore.server.storage import ArtifactStore

log = logging.getLogger("initscore.lifecycle")

Guard = Callable[[JobRecord], bool]
ACTIVE: tuple[str, ...] = tuple(s for s in JOB_STATES if s not in FINAL_STATES)  # queued, running
CHECKPOINTS = "checkpoints"  # artifact-store ref namespace of search checkpoints, one per job id
RESUMABLE_KINDS = frozenset({"search"})  # the job kinds that keep a checkpoint (the only ones that can resume)


def persist(store: ArtifactStore, rec: JobRecord, *, strict: bool = False) -> None:
    """Write ``rec`` as its durable copy ``refs/jobs/<id>.json`` (read when the index has lost it).

    Args:
        store: the artifact store.
        rec: the record as it now is.
        strict: raise the store's ``OSError`` (``StoreError``) instead of logging it; the API
            uses this where a record must not exist in the index without its durable copy.
    """
    try:
        store.put_ref("jobs", rec.id, rec.model_dump(mode="json"))
    except OSError as exc:
        if strict:
            raise
        log.error("cannot persist record %s: %s", rec.id, exc)


def _transition(
    index: JobIndex, store: ArtifactStore, job_id: str, *, leaves: Collection[str], attempt: int | None,
    guard: Guard | None, apply: Callable[[JobRecord], None], strict: bool = False,
) -> JobRecord | None:
    """Compare-and-set ``apply`` on the record, then persist the winner's record once; None if it lost."""
    won = False

    def update(r: JobRecord) -> JobRecord | None:
        nonlocal won
        won = False  # the index may call this again after a concurrent write: only the last call counts
        if r.status not in leaves or (attempt is not None and r.attempt != attempt) or (guard is not None and not guard(r)):
            return None
        apply(r)
        won = True
        return r

    new = index.update(job_id, update)
    if new is None or not won:
        return None
    persist(store, new, strict=strict)
    if new.status in FINAL_STATES and new.kind in RESUMABLE_KINDS:
        clear_checkpoint(store, job_id)
    return new


def clear_checkpoint(store: ArtifactStore, job_id: str) -> None:
    """Remove the job's search checkpoint if there is one (a failure is logged: it only leaves a file behind)."""
    try:
        store.delete_ref(CHECKPOINTS, job_id)
    except OSError as exc:
        log.warning("job %s: search checkpoint not removed: %s", job_id, exc)


def start(index: JobIndex, store: ArtifactStore, job_id: str, attempt: int, worker: str) -> JobRecord | None:
    """queued (or running, for an RQ retry of the same attempt) -> running on ``worker``."""

    def apply(r: JobRecord) -> None:
        r.status, r.started_at, r.worker = "running", time.time(), worker
        r.note(f"attempt {attempt} started on {worker}")

    new = _transition(index, store, job_id, leaves=ACTIVE, attempt=attempt, guard=None, apply=apply)
    if new is not None:
        log.info("job %s attempt %d started on %s", job_id, attempt, worker)
    return new


def finish(
    index: JobIndex, store: ArtifactStore, job_id: str, attempt: int, *, result_sha: str,
    weights_sha: str | None, plot_sha: str | None, seconds: float,
) -> JobRecord | None:
    """running -> finished with the stored artifacts' sha256; ``seconds`` goes to the duration histogram."""

    def apply(r: JobRecord) -> None:
        r.status, r.finished_at = "finished", time.time()
        r.result_sha, r.weights_sha, r.plot_sha = result_sha, weights_sha, plot_sha
        r.note(f"attempt {attempt} finished in {seconds:.3f} s")

    new = _transition(index, store, job_id, leaves=("running",), attempt=attempt, guard=None, apply=apply)
    if new is not None:
        index.observe_duration(new.kind, seconds)
        log.info("job %s attempt %d finished in %.3f s", job_id, attempt, seconds)
    return new


def fail(
    index: JobIndex, store: ArtifactStore, job_id: str, error: JobError, note: str, *, attempt: int | None = None,
    leaves: Collection[str] = ACTIVE, guard: Guard | None = None, seconds: float | None = None,
) -> JobRecord | None:
    """queued or running (or only ``leaves``) -> failed with ``error``; ``seconds``, when given, goes to the
    duration histogram (a run that failed; the reaper's failures have no run time)."""

    def apply(r: JobRecord) -> None:
        r.status, r.finished_at, r.error = "failed", time.time(), error
        r.note(note)

    new = _transition(index, store, job_id, leaves=leaves, attempt=attempt, guard=guard, apply=apply)
    if new is not None:
        if seconds is not None:
            index.observe_duration(new.kind, seconds)
        log.warning("job %s attempt %d failed (%s): %s", job_id, new.attempt, error.type, note)
    return new


def cancel(
    index: JobIndex, store: ArtifactStore, job_id: str, note: str, *, attempt: int | None = None,
    leaves: Collection[str] = ACTIVE, strict: bool = False,
) -> JobRecord | None:
    """queued or running (or only ``leaves``) -> cancelled; ``strict`` as in :func:`persist`."""

    def apply(r: JobRecord) -> None:
        r.status, r.finished_at, r.cancel_requested = "cancelled", time.time(), True
        r.note(note)

    new = _transition(index, store, job_id, leaves=leaves, attempt=attempt, guard=None, apply=apply, strict=strict)
    if new is not None:
        log.info("job %s %s", job_id, note)
    return new


def requeue(
    index: JobIndex, store: ArtifactStore, job_id: str, attempt: int, why: str, *,
    leaves: Collection[str] = ACTIVE, guard: Guard | None = None,
) -> JobRecord | None:
    """An abandoned ``attempt`` -> queued as attempt + 1 (the caller enqueues the returned record).

    The caller checks ``attempt < max_attempts`` first (``max_attempts`` never changes) and fails the
    job instead at the last attempt.
    """

    def apply(r: JobRecord) -> None:
        r.note(f"{why}; re-queued as attempt {r.attempt + 1} of {r.max_attempts}")
        r.attempt += 1
        r.status, r.worker, r.started_at = "queued", None, None

    new = _transition(index, store, job_id, leaves=leaves, attempt=attempt, guard=guard, apply=apply)
    if new is not None:
        log.warning("job %s: %s; re-queued (attempt %d)", job_id, why, new.attempt)
    return new


def request_cancel(index: JobIndex, store: ArtifactStore, job_id: str) -> JobRecord | None:
    """The API's cancel: raise the job's cancel flag; a queued job is cancelled at once (:func:`cancel`,
    strict), a running one is marked and its worker cancels it at its next progress call.

    Returns the record as it now is (None if the index has no record).
    """
    index.request_cancel(job_id)
    new = cancel(index, store, job_id, "cancelled while queued", leaves=("queued",), strict=True)
    if new is not None:
        return new

    def mark(r: JobRecord) -> JobRecord | None:
        if r.status != "running":
            return None
        r.cancel_requested = True
        r.note("cancel requested while running")
        return r

    return index.update(job_id, mark)


__all__ = ["ACTIVE", "CHECKPOINTS", "RESUMABLE_KINDS", "cancel", "clear_checkpoint", "fail", "finish", "persist", "request_cancel", "requeue", "start"]
