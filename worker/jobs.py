"""The job function: one code path from record to stored result, in an RQ worker or inline.

:func:`execute_job` is the job function named by ``initscore.server.defaults.JOB_FUNCTION``:
RQ calls it with JSON kwargs ``job_id``, ``attempt``, ``request``; the inline backend
(``initscore serve --inline``) resolves the same name and adds ``inline``. Both go through
:func:`run_recorded`, whose record transitions are those of :mod:`initscore.server.lifecycle`:

1. skip unless the record is queued for this attempt (or running for this attempt
   with a dead heartbeat: an RQ retry after a transient fault), honour a cancel;
2. heartbeat (queued mode) and ``lifecycle.start`` (compare-and-set on the attempt);
3. ``initscore.jobs.run_job`` -- progress goes to ``job.meta`` (queued) or the
   record (inline); each progress call checks the cancel flag; the job's checkpoint lives in
   the artifact store (:class:`StoreCheckpoint`, ref ``checkpoints/<job id>``): a search job
   saves its scan there, so the attempt that follows a dead worker resumes after its last
   saved architecture (``lifecycle`` removes it when the job ends for good: finished, failed
   or cancelled, whoever ends it; a requeue keeps it);
4. store weights (safetensors + provenance metadata), plot (PNG) and the result
   (JSON) in the artifact store, then ``lifecycle.finish`` (compare-and-set again, so a
   job the reaper handed to another worker cannot be finished twice).

Failures: deterministic ones (``InitscoreError``, out of memory, non-finite
gradients, timeouts, a failing artifact store, bugs) are recorded as ``failed``
with a one-line reason and NOT retried; only Redis connection faults propagate so
that RQ's ``Retry`` runs the job again.

Redis outages (queued mode): every record transition, heartbeat and duration write
of a running job retries with backoff for up to ``settings.redis_patience`` seconds
(:mod:`worker.reconnect`), so a job that runs or ends while Redis restarts is
recorded once Redis answers; progress and cancel checks never wait (the job computes
on). Past the patience the connection error propagates to RQ's retry rules.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

from initscore.errors import is_out_of_memory
from initscore.server import defaults, lifecycle
from initscore.server.index import JobIndex
from initscore.server.queue import InlineContext
from initscore.server.records import JobCancelled, JobError, JobRecord
from initscore.server.settings import Settings, get_settings
from initscore.server.storage import ArtifactStore, FileArtifactStore, StoreError

log = logging.getLogger("initscore.worker")

ProgressSink = Callable[[dict[str, Any]], None]


def _transient_types() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RCE
    from redis.exceptions import TimeoutError as RTE

    return (RCE, RTE)


def classify_failure(exc: BaseException, request: dict[str, Any]) -> JobError:
    """The failure record of a deterministic fault: (type, title, one-line detail)."""
    from initscore.errors import InitscoreError, NonFiniteError

    bs = (request.get("data") or {}).get("batch_size")
    if isinstance(exc, NonFiniteError):
        where = f" (tensor {exc.tensor})" if getattr(exc, "tensor", None) else ""
        return JobError(type="non-finite", title="Non-finite gradient", detail=f"{exc}{where}")
    if is_out_of_memory(exc):
        hint = f"; resubmit with a smaller data.batch_size (e.g. {max(2, bs // 2)})" if isinstance(bs, int) else ""
        return JobError(type="out-of-memory", title="Out of memory", detail=f"{str(exc).splitlines()[0][:300]}{hint}")
    if isinstance(exc, InitscoreError):
        slug = type(exc).__name__.replace("Error", "").lower() or "initscore"
        return JobError(type=f"{slug}-error", title=exc.title, detail=str(exc))
    if type(exc).__name__ == "JobTimeoutException":
        return JobError(type="timeout", title="Job timed out", detail=f"{exc}; use fewer iterations or a smaller model")
    if isinstance(exc, (RuntimeError, IndexError)) and "out of bounds" in str(exc):
        return JobError(type="model-error", title="The model failed on this data",
                        detail=f"{str(exc).splitlines()[0][:300]}; a label is larger than the model's outputs: "
                        "check that model.args.num_classes covers the data's classes")
    if isinstance(exc, RuntimeError):
        shape = (request.get("data") or {}).get("shape")
        hint = f"; check that the model's input size matches the data (data.shape {shape})" if shape else \
            "; check that the model's input size and classes match the data"
        return JobError(type="model-error", title="The model failed on this data", detail=f"{str(exc).splitlines()[0][:300]}{hint}")
    if isinstance(exc, StoreError):
        return JobError(type="store-error", title="Artifact store failure", detail=str(exc))
    return JobError(type="internal-error", title="Internal error", detail=f"{type(exc).__name__}: {str(exc)[:300]}")


class _Heartbeat:
    """Refresh ``hb:<job>:<attempt>`` every ttl/3 seconds on a daemon thread while a job runs."""

    def __init__(self, index: JobIndex, job_id: str, attempt: int, ttl: float) -> None:
        self.index, self.job_id, self.attempt, self.ttl = index, job_id, attempt, ttl
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name=f"hb-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.index.heartbeat(self.job_id, self.attempt, self.ttl)
            except Exception:  # Redis blip: the next beat may succeed
                pass

    def __enter__(self) -> "_Heartbeat":
        try:
            self.index.heartbeat(self.job_id, self.attempt, self.ttl)
        except Exception:  # Redis away: the start transition below waits for it
            pass
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join(timeout=1)


class _PatientIndex:
    """The job index of one running job, every call retried through a Redis outage (see worker.reconnect).

    Calls give up after `patience` seconds and re-raise, so RQ's retry rules take over;
    ``cancel_requested_now`` is the one call that does not wait (progress checks).
    """

    def __init__(self, index: JobIndex, job_id: str, patience: float) -> None:
        self._index, self._job_id, self._patience = index, job_id, patience

    def cancel_requested_now(self, job_id: str) -> bool:
        return self._index.cancel_requested(job_id)

    def __getattr__(self, name: str) -> Any:
        from worker.reconnect import patiently

        fn = getattr(self._index, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(fn, *args, what=f"{name} of job {self._job_id}", patience=self._patience, **kwargs)

        return call


def run_recorded(
    job_id: str,
    attempt: int,
    request: dict[str, Any],
    *,
    index: JobIndex,
    store: ArtifactStore,
    settings: Settings,
    worker_name: str,
    publish: ProgressSink | None = None,
    heartbeat: bool = True,
) -> str:
    """Run one attempt of a recorded job; returns the final status ('skipped' if not ours)."""
    hb = _Heartbeat(index, job_id, attempt, settings.heartbeat_ttl) if heartbeat else None
    if heartbeat:  # queued mode: Redis calls wait out an outage of up to settings.redis_patience
        index = _PatientIndex(index, job_id, settings.redis_patience)
    rec = index.get(job_id)
    if rec is None:
        log.warning("job %s has no record; skipping", job_id)
        return "skipped"
    resumable = rec.status == "running" and rec.attempt == attempt and not index.alive(job_id, attempt)
    if rec.attempt != attempt or not (rec.status == "queued" or resumable):
        log.info("job %s attempt %d: record is %s/attempt %d; skipping", job_id, attempt, rec.status, rec.attempt)
        return "skipped"
    if rec.cancel_requested or index.cancel_requested(job_id):
        lifecycle.cancel(index, store, job_id, "cancelled before it started")
        return "cancelled"

    if hb:
        hb.__enter__()
    try:
        if lifecycle.start(index, store, job_id, attempt, worker_name) is None:
            return "skipped"  # cancelled, re-queued or taken by another worker meanwhile
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, metrics: dict[str, Any] | None = None) -> None:
            # progress never waits for Redis: while it is away the job computes on, unaware of a cancel
            try:
                cancelled = index.cancel_requested_now(job_id) if heartbeat else index.cancel_requested(job_id)
            except _transient_types():
                cancelled = False
            if cancelled:
                raise JobCancelled(job_id)
            now = time.monotonic()
            if publish is not None and (done >= total or now - last[0] >= defaults.PROGRESS_MIN_INTERVAL):
                last[0] = now
                clean = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str, bool)) or v is None}
                try:
                    publish({"done": int(done), "total": int(total), "fraction": (done / total) if total else None, "metrics": clean})
                except _transient_types():
                    pass

        try:
            return _execute(job_id, attempt, request, rec, index, store, progress, t0, settings)
        except _transient_types():
            raise
        except JobCancelled:
            lifecycle.cancel(index, store, job_id, "cancelled while running", attempt=attempt)
            return "cancelled"
        except BaseException as exc:  # deterministic: record, do not retry
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            err = classify_failure(exc, request)
            if err.type == "internal-error":
                log.error("job %s failed with a bug:\n%s", job_id, traceback.format_exc())
            lifecycle.fail(index, store, job_id, err, f"attempt {attempt} failed: {err.type}", attempt=attempt,
                           seconds=time.perf_counter() - t0)
            return "failed"
    finally:
        if hb:
            hb.__exit__()


def _upload_reader(store: ArtifactStore, cap: int) -> Callable[[str], bytes]:
    """sha256 -> the bytes of an uploaded ONNX file (the API checked it and the caller's access at submit); read
    once per job, since a rectify job reads it again to write the rectified file."""
    import functools

    from initscore.errors import SpecError

    @functools.lru_cache(maxsize=1)
    def read(sha: str) -> bytes:
        with store.open(sha) as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise SpecError(f"the uploaded model {sha} is over the cap of {cap:,} bytes (INITSCORE_MAX_MODEL_BYTES)")
        return data

    return read


class StoreCheckpoint:
    """A search job's checkpoint as the artifact-store ref ``checkpoints/<job id>`` (written atomically by the store);
    shared by every attempt of the job. An unreadable checkpoint is ignored with a warning; a failing save is
    logged and the job computes on (the checkpoint only saves work, the result does not depend on it). Removed by
    :mod:`initscore.server.lifecycle` when the job reaches a final state (:func:`lifecycle.clear_checkpoint`)."""

    def __init__(self, store: ArtifactStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id

    def load(self) -> dict[str, Any] | None:
        try:
            doc = self.store.get_ref(lifecycle.CHECKPOINTS, self.job_id)
        except StoreError as exc:
            log.warning("job %s: search checkpoint unreadable (%s); starting over", self.job_id, exc)
            return None
        if doc is not None:
            log.info("job %s: found a search checkpoint after %s architectures", self.job_id, doc.get("done"))
        return doc

    def save(self, state: dict[str, Any]) -> None:
        try:
            self.store.put_ref(lifecycle.CHECKPOINTS, self.job_id, state)
        except (StoreError, ValueError) as exc:
            log.warning("job %s: search checkpoint not saved: %s", self.job_id, exc)


def _execute(
    job_id: str, attempt: int, request: dict[str, Any], rec: JobRecord, index: JobIndex, store: ArtifactStore,
    progress: Callable[..., None], t0: float, settings: Settings,
) -> str:
    from initscore.jobs import run_job

    from initscore.data.readers import DataCaps

    read_upload = _upload_reader(store, settings.max_model_bytes)
    caps = DataCaps(max_bytes=settings.max_data_bytes, max_samples=settings.max_data_samples)
    # only a kind that can resume (search) gets a checkpoint; run_job's other kinds take None
    checkpoint = StoreCheckpoint(store, job_id) if rec.kind in lifecycle.RESUMABLE_KINDS else None
    result, weights, png = run_job(request, progress=progress, allowed_roots=list(settings.allowed_roots),
                                   max_params=settings.max_params, model_file=read_upload, data_caps=caps,
                                   checkpoint=checkpoint)
    update: dict[str, Any] = {}
    weights_sha = plot_sha = None
    if weights is not None:
        from initscore import weights_file

        provenance = weights_file.Provenance.for_request(
            request, rec.request_hash, weights_file.summary_of(result.model_dump(mode="json")))
        weights_sha = store.put_bytes(weights_file.to_bytes(weights, provenance))
        if "weights_sha256" in type(result).model_fields:
            update["weights_sha256"] = weights_sha
        model = request.get("model") or {}
        if model.get("arch") == "onnx":  # the upload with the rectified initializers, as ONNX
            from initscore.onnx_model import rectified_onnx

            update["onnx_sha256"] = store.put_bytes(rectified_onnx(read_upload(model["args"]["sha256"]), weights))
    if png is not None:
        plot_sha = store.put_bytes(png)
        if "plot_sha256" in type(result).model_fields:
            update["plot_sha256"] = plot_sha
    if update:
        result = result.model_copy(update=update)
    result_sha = store.put_json(result.model_dump(mode="json"))
    seconds = time.perf_counter() - t0
    if lifecycle.finish(index, store, job_id, attempt, result_sha=result_sha, weights_sha=weights_sha,
                        plot_sha=plot_sha, seconds=seconds) is None:
        log.warning("job %s attempt %d finished but the record moved on; result discarded", job_id, attempt)
        return "skipped"
    try:
        store.put_ref("results", rec.request_hash, {"result_sha": result_sha, "weights_sha": weights_sha, "plot_sha": plot_sha, "kind": rec.kind})
    except OSError as exc:
        log.error("cannot index result of %s by request hash: %s", job_id, exc)
    return "finished"


# ---------------------------------------------------------------- entry points
_ctx: dict[str, Any] = {}


def _worker_context(connection: Any) -> tuple[JobIndex, ArtifactStore, Settings]:
    from initscore.server.index import RedisJobIndex

    settings = get_settings()
    key = id(connection)
    if _ctx.get("key") != key:
        _ctx.update(
            key=key,
            index=RedisJobIndex(connection, record_ttl=settings.record_ttl),
            store=FileArtifactStore(settings.artifact_dir),
        )
    return _ctx["index"], _ctx["store"], settings


def execute_job(job_id: str, attempt: int, request: dict[str, Any], inline: InlineContext | None = None) -> dict[str, Any]:
    """The job function (``defaults.JOB_FUNCTION``). Returns {'job_id', 'status'}.

    RQ calls it with JSON kwargs (``job_id``, ``attempt``, ``request``); it raises only on transient
    faults. The inline backend calls it by the same name with ``inline`` (the API process's index,
    store and settings); it then never raises.
    """
    if inline is not None:
        return {"job_id": job_id, "status": _run_inline(job_id, attempt, request, inline)}
    from rq import get_current_job

    job = get_current_job()
    assert job is not None, "execute_job runs inside an RQ worker"
    index, store, settings = _worker_context(job.connection)

    def publish(p: dict[str, Any]) -> None:
        job.meta["progress"] = p
        job.save_meta()

    status = run_recorded(
        job_id, attempt, request, index=index, store=store, settings=settings,
        worker_name=job.worker_name or "rq-worker", publish=publish, heartbeat=True,
    )
    return {"job_id": job_id, "status": status}


def _run_inline(job_id: str, attempt: int, request: dict[str, Any], ctx: InlineContext) -> str:
    """One job in a thread of the API process: progress goes into the record; nothing is left to retry."""
    index = ctx.index

    def publish(p: dict[str, Any]) -> None:
        def _set(r: JobRecord) -> JobRecord | None:
            if r.status != "running":
                return None
            r.progress = p
            return r

        index.update(job_id, _set)

    try:
        return run_recorded(
            job_id, attempt, request, index=index, store=ctx.store, settings=ctx.settings,
            worker_name=f"inline-{threading.current_thread().name}", publish=publish, heartbeat=False,
        )
    except Exception:  # pragma: no cover - nothing is left to retry in-process
        log.exception("inline job %s crashed", job_id)
        return "failed"
