"""Submitting jobs: the queued backend (RQ on Redis, JSON serializer) and the inline backend.

Both expose the same small interface to the API:
``enqueue(record)``, ``cancel_queued(record)``, ``progress(record)``, ``readiness()``,
``queue_depths()``, ``start()``/``stop()``.

Abandoned jobs (queued mode). A worker refreshes ``hb:<job>:<attempt>`` every
``heartbeat_ttl/3`` seconds while it runs a job. :func:`reap` (run by the API every
``reaper_interval`` seconds and by each worker at start-up) finds running jobs whose
heartbeat expired -- the worker was SIGKILLed, lost its machine or its Redis link --
and re-queues them as the next attempt while ``attempt < max_attempts`` (default 2:
one re-run), else records them as failed with type ``worker-died``. The record's
``events`` list says which happened. Queued records whose RQ job vanished (a Redis
restart without persistence) are re-enqueued; those whose RQ job failed outside our
job function (transient retries exhausted) are recorded as failed.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from initscore.server import defaults, lifecycle
from initscore.server.index import JobIndex, MemoryJobIndex, RedisJobIndex
from initscore.server.records import JobError, JobRecord
from initscore.server.settings import Settings
from initscore.server.storage import ArtifactStore, FileArtifactStore

log = logging.getLogger("initscore.service")


@dataclass(frozen=True)
class InlineContext:
    """What a job run inside the API process (inline mode) uses instead of the RQ worker's own context."""

    index: JobIndex
    store: ArtifactStore
    settings: Settings


def job_function(name: str = defaults.JOB_FUNCTION) -> Callable[..., Any]:
    """The job function named by a dotted path (``package.module.function``), imported with importlib.

    RQ resolves the same name in a worker; the inline backend resolves it here, so the server core
    names the worker's code without importing it.
    """
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def rq_job_id(rec: JobRecord) -> str:
    """RQ job id of one attempt: '<job id>-<attempt>' (a re-queue gets a fresh RQ job)."""
    return f"{rec.id}-{rec.attempt}"


def redis_from_url(url: str) -> Any:
    from redis import Redis

    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


class RQBackend:
    mode = "queued"

    def __init__(self, settings: Settings, redis: Any | None = None) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        assert settings.redis_url or redis is not None
        self.settings = settings
        self.redis = redis if redis is not None else redis_from_url(settings.redis_url)  # type: ignore[arg-type]
        self.index: RedisJobIndex = RedisJobIndex(self.redis, record_ttl=settings.record_ttl)
        self.store = FileArtifactStore(settings.artifact_dir)
        self.serializer = JSONSerializer
        self.queues = {name: Queue(name, connection=self.redis, serializer=JSONSerializer) for name in defaults.QUEUES}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- submission
    def enqueue(self, rec: JobRecord) -> None:
        from rq import Retry

        q = self.queues[defaults.QUEUE_FOR_KIND[rec.kind]]
        q.enqueue(
            defaults.JOB_FUNCTION,
            kwargs={"job_id": rec.id, "attempt": rec.attempt, "request": rec.request},
            job_id=rq_job_id(rec),
            job_timeout=defaults.TIMEOUT_FOR_KIND[rec.kind],
            result_ttl=defaults.RESULT_TTL,
            failure_ttl=defaults.FAILURE_TTL,
            retry=Retry(max=defaults.TRANSIENT_RETRIES, interval=list(defaults.TRANSIENT_RETRY_INTERVALS)),
            description=f"{rec.kind} {rec.id}",
        )

    def _fetch(self, rec: JobRecord) -> Any | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            return Job.fetch(rq_job_id(rec), connection=self.redis, serializer=self.serializer)
        except NoSuchJobError:
            return None

    def cancel_queued(self, rec: JobRecord) -> None:
        job = self._fetch(rec)
        if job is not None:
            try:
                job.cancel()
            except Exception as exc:  # already started or finished: the worker sees the cancel flag
                log.info("rq cancel of %s: %s", rec.id, exc)

    def progress(self, rec: JobRecord) -> dict[str, Any] | None:
        if rec.status != "running":
            return None
        job = self._fetch(rec)
        if job is None:
            return None
        meta = job.get_meta(refresh=False) if hasattr(job, "get_meta") else job.meta
        return meta.get("progress")

    # -------------------------------------------------------------- health
    def workers(self) -> dict[str, int]:
        from rq import Worker

        return {name: len(Worker.all(queue=q)) for name, q in self.queues.items()}

    def readiness(self) -> tuple[dict[str, str], dict[str, Any]]:
        """Checks ``redis`` and ``workers`` ("ok..." or "failed: why") and the live worker names.

        A worker is live if it beat ``initscore:workers`` within ``settings.worker_beat_window``
        seconds (RQ's own worker keys outlive a SIGKILLed worker by the job timeout).
        """
        window = self.settings.worker_beat_window
        try:
            self.redis.ping()
        except Exception as exc:
            why = f"failed: the job queue (Redis) is unreachable ({type(exc).__name__})"
            return {"redis": why, "workers": "failed: unknown while Redis is unreachable"}, {"workers": []}
        try:
            live = self.index.live_workers(window)
        except Exception as exc:
            return {"redis": "ok", "workers": f"failed: cannot read worker beats ({type(exc).__name__})"}, {"workers": []}
        if not live:
            return {"redis": "ok", "workers": f"failed: no worker beat within the last {window:g} s; start `initscore worker`"}, {"workers": []}
        return {"redis": "ok", "workers": f"ok: {len(live)} beat within {window:g} s"}, {"workers": live}

    def queue_depths(self) -> dict[str, int]:
        return {name: q.count for name, q in self.queues.items()}

    # -------------------------------------------------------------- reaper
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._reaper_loop, name="initscore-reaper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _reaper_loop(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval):
            try:
                reap(self, self.settings)
            except Exception as exc:  # Redis down: try again next round
                log.warning("reaper round skipped: %s", type(exc).__name__)


def _abandon(backend: "RQBackend", rec: JobRecord, expected: str, why: str) -> str | None:
    """An abandoned attempt: re-queue it as the next attempt (lifecycle.requeue), or fail it at the last.

    Only the sweeper whose compare-and-set wins (record still `expected`, same attempt, no live
    heartbeat) acts; returns 'requeued', 'failed' or None.
    """
    idx = backend.index

    def dead(r: JobRecord) -> bool:
        return not idx.alive(r.id, r.attempt)

    if rec.attempt < rec.max_attempts:
        new = lifecycle.requeue(idx, backend.store, rec.id, rec.attempt, why, leaves=(expected,), guard=dead)
        if new is None:  # another sweeper (or the worker) changed it first
            return None
        backend.enqueue(new)
        return "requeued"
    error = JobError(
        type="worker-died",
        title="Worker died",
        detail=f"the worker running this job died or lost contact during {rec.attempt} attempt(s); "
        "if it ran out of memory, resubmit with a smaller data.batch_size",
    )
    new = lifecycle.fail(idx, backend.store, rec.id, error, f"{why}; not re-queued (max_attempts={rec.max_attempts})",
                         attempt=rec.attempt, leaves=(expected,), guard=dead)
    return None if new is None else "failed"


def _dequeued_and_dropped(backend: "RQBackend", rec: JobRecord, now: float, grace: float) -> bool:
    """True when an RQ job still says QUEUED but is no longer on its queue, for longer than `grace`.

    That is a worker that popped it and died before RQ marked it started. The first sighting is
    remembered in Redis; only a second sweep at least `grace` seconds later reports it, so a live
    worker in the short window between dequeue and start is never mistaken for a dead one.
    """
    q = backend.queues[defaults.QUEUE_FOR_KIND[rec.kind]]
    rq_id = rq_job_id(rec)
    if backend.redis.lpos(q.key, rq_id) is not None or backend.index.alive(rec.id, rec.attempt):
        return False
    key = f"initscore:offqueue:{rq_id}"
    backend.redis.set(key, repr(now), nx=True, ex=int(max(grace * 20, 600)))
    first = float(backend.redis.get(key) or now)
    return now - first >= grace


def reap(backend: RQBackend, settings: Settings, *, now: float | None = None) -> list[tuple[str, str]]:
    """One sweep for abandoned jobs; returns [(job id, action)] with action 'requeued' or 'failed'."""
    from rq.job import JobStatus

    idx = backend.index
    now = time.time() if now is None else now
    actions: list[tuple[str, str]] = []
    for job_id in idx.running_ids():
        rec = idx.get(job_id)
        if rec is None or rec.status != "running":
            continue
        if idx.alive(job_id, rec.attempt):
            continue
        if rec.started_at and now - rec.started_at < settings.heartbeat_ttl:
            continue  # a worker sets its heartbeat before it marks the job running; be lenient anyway
        action = _abandon(backend, rec, "running", f"worker {rec.worker or '?'} stopped heartbeating during "
                          f"attempt {rec.attempt} (it died or lost its Redis link)")
        if action:
            actions.append((job_id, action))

    # queued records whose RQ job failed outside the job function, vanished, or was dequeued by a
    # worker that died before the job function marked the record running (RQ says STARTED, no heartbeat)
    queued = sorted(m.decode() if isinstance(m, bytes) else m for m in backend.redis.srandmember(idx._k("state", "queued"), 200))
    for job_id in queued:
        rec = idx.get(job_id)
        if rec is None or rec.status != "queued" or now - rec.created_at < 10:
            continue
        job = backend._fetch(rec)
        if job is None:
            backend.enqueue(rec)
            actions.append((job_id, "re-enqueued"))
            continue
        status = job.get_status(refresh=False)
        if status == JobStatus.QUEUED and _dequeued_and_dropped(backend, rec, now, settings.heartbeat_ttl):
            action = _abandon(backend, rec, "queued", f"attempt {rec.attempt} was taken off the queue by a worker "
                              "that never started it (it died between dequeue and start)")
            if action:
                actions.append((job_id, action))
            continue
        if status == JobStatus.STARTED:
            started = job.started_at.timestamp() if job.started_at else rec.created_at
            if now - started >= settings.heartbeat_ttl and not idx.alive(job_id, rec.attempt):
                action = _abandon(backend, rec, "queued", f"worker {job.worker_name or '?'} dequeued attempt "
                                  f"{rec.attempt} but never started it (it died before the job function ran)")
                if action:
                    actions.append((job_id, action))
            continue
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            info = (job.latest_result().exc_string if job.latest_result() else "") or ""
            last = info.strip().splitlines()[-1] if info.strip() else str(status)

            error = JobError(type="queue-failure", title="Job failed in the queue", detail=last[:500])
            lifecycle.fail(idx, backend.store, job_id, error, f"RQ reported {status}: {last[:200]}", leaves=("queued",))
            actions.append((job_id, "failed"))
    return actions


class InlineBackend:
    """Jobs run in this process on a thread pool; no Redis (``initscore serve --inline``)."""

    mode = "inline"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index: MemoryJobIndex = MemoryJobIndex()
        self.store = FileArtifactStore(settings.artifact_dir)
        self.pool = ThreadPoolExecutor(max_workers=settings.inline_workers, thread_name_prefix="initscore-inline")

    def enqueue(self, rec: JobRecord) -> None:
        """Run the job function (the one RQ runs, by name) on a pool thread; the engine (torch) loads when a job runs."""
        self.pool.submit(job_function(), job_id=rec.id, attempt=rec.attempt, request=rec.request,
                         inline=InlineContext(self.index, self.store, self.settings))

    def cancel_queued(self, rec: JobRecord) -> None:  # the pool thread skips a record that is no longer queued
        return None

    def progress(self, rec: JobRecord) -> dict[str, Any] | None:
        return rec.progress if rec.status == "running" else None

    def readiness(self) -> tuple[dict[str, str], dict[str, Any]]:
        n = self.settings.inline_workers
        return {"workers": f"ok: {n} inline thread(s)"}, {"threads": n}

    def workers(self) -> dict[str, int]:
        return {"inline": self.settings.inline_workers}

    def queue_depths(self) -> dict[str, int]:
        return {"inline": self.index.counts()["queued"]}

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


Backend = RQBackend | InlineBackend


def make_backend(settings: Settings) -> Backend:
    return InlineBackend(settings) if settings.inline else RQBackend(settings)


__all__ = ["Backend", "InlineBackend", "InlineContext", "JobIndex", "RQBackend", "job_function", "make_backend", "reap",
           "rq_job_id"]
