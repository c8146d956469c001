"""/v1/jobs: submit, read (long-poll), list, cancel, download weights and plots.

Redis and file I/O is synchronous, so the routes are plain ``def`` (FastAPI runs them
in its thread pool) and never block the event loop; only ``GET /v1/jobs/{id}`` is
``async``, so that a long-poll (``?wait=``) sleeps without holding a thread: it reads
the record with the asyncio Redis client on the loop (``deps.AsyncRecords``, queued
mode, reads of one burst coalesced into one MGET) and goes to the thread pool only for
the rest (a record only in the store, a running job's progress, a finished job's
result; the inline mode's memory index). The plain poll (no query string) is answered
by :class:`JobReadFastPath` ahead of FastAPI's routing, with the same functions.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Annotated, Any, Callable, Coroutine, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from initscore.contract import JobKind, JobRequest, JobState, request_hash
from service.deps import AppContext, Principal, authenticate, get_ctx, principal
from service.problems import PROBLEM_JSON, ProblemError, problem_response
from initscore.server.records import JobRecord, group_id_for, new_job_id
from service.routes.models import visible_upload
from initscore.server.storage import StoreError
from service.validation import check_request, deployment_problems, parts_of_body
from service.views import job_not_found, job_view, list_summaries, load_record, valid_job_id
from initscore.server import defaults, lifecycle

log = logging.getLogger("initscore.service")


class ListEveryProblem(APIRoute):
    """A route whose body, when it breaks the contract, is also put through the deployment checks part by part.

    FastAPI answers a contract (pydantic) error before the endpoint runs, so the deployment's problems
    (unknown architecture, a data root outside the roots, limits) would only show after the contract
    ones were fixed. Here the parts that parse alone (:func:`service.validation.parts_of_body`) are
    checked and their problems appended to the same 422, after the contract's. Authentication has
    already succeeded when the body is validated (dependencies are solved first).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if exc.body is None:
                    raise
                ctx = get_ctx(request)
                who = authenticate(ctx.settings, request)
                extra = await run_in_threadpool(
                    deployment_problems, parts_of_body(exc.body), ctx.settings,
                    lambda sha: visible_upload(ctx, who, sha) is not None)
                if not extra:
                    raise
                # a ("body", "<dotted loc>") location renders as the dotted loc (problems._loc)
                more = [{"type": "deployment", "loc": ("body", e["loc"]), "msg": e["msg"]} for e in extra]
                raise RequestValidationError([*exc.errors(), *more], body=exc.body) from None

        return route


router = APIRouter(prefix="/v1", tags=["jobs"])

PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "problem details (RFC 9457)"}
ERRORS = {400: PROBLEM, 401: PROBLEM, 404: PROBLEM, 409: PROBLEM, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM, 503: PROBLEM}


def _persist(ctx: AppContext, rec: JobRecord) -> None:
    try:
        lifecycle.persist(ctx.store, rec, strict=True)
    except StoreError as exc:
        raise ProblemError(503, "Service unavailable", f"the artifact store cannot accept the job: {exc}", slug="store-unavailable") from exc


def _accepted(rec: JobRecord, ctx: AppContext, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{rec.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job_view(rec, ctx), status_code=202, headers=headers)


def submit_job(
    request: Request,
    job: Annotated[JobRequest, Body()],
    who: Annotated[Principal, Depends(principal)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    reuse: Annotated[bool, Query(description="answer from a stored result of an identical request")] = True,
) -> JSONResponse:
    ctx = get_ctx(request)
    check_request(job, ctx.settings, lambda sha: visible_upload(ctx, who, sha) is not None)
    payload: dict[str, Any] = job.model_dump(mode="json")
    rhash = request_hash(job)
    job_id = new_job_id()

    if idempotency_key is not None:
        key_hash = hashlib.sha256(idempotency_key.encode()).hexdigest()
        earlier = ctx.index.idem_reserve(who.owner, key_hash, job_id, rhash, defaults.IDEMPOTENCY_TTL)
        if earlier is not None:
            if earlier.get("request_hash") != rhash:
                raise ProblemError(422, "Idempotency key reused", "this Idempotency-Key was used with a different request body; use a new key",
                                   slug="idempotency-key-reused")
            for _ in range(50):  # the first request may still be writing its record
                try:
                    rec = load_record(ctx, earlier["job_id"], who)
                    return _accepted(rec, ctx, replayed=True)
                except ProblemError:
                    time.sleep(0.02)
            raise ProblemError(409, "Conflict", "the first request with this Idempotency-Key is still being accepted; retry", slug="idempotency-in-progress")
        created: list[bool] = []
        try:
            return _create(ctx, job, who, payload, rhash, job_id, reuse, created)
        except BaseException:
            if not created:  # nothing was recorded: free the key so that a retry after the fault can succeed
                try:
                    ctx.index.idem_release(who.owner, key_hash, job_id)
                except Exception as exc:
                    log.warning("cannot release idempotency key of failed submit %s: %s", job_id, type(exc).__name__)
            raise
    return _create(ctx, job, who, payload, rhash, job_id, reuse, [])


router.add_api_route("/jobs", submit_job, methods=["POST"], status_code=202, responses=ERRORS,
                     summary="Submit a score, rectify, batch or propagation job", route_class_override=ListEveryProblem)


def _create(ctx: AppContext, job: JobRequest, who: Principal, payload: dict[str, Any], rhash: str, job_id: str,
            reuse: bool, created: list[bool]) -> JSONResponse:
    """Record (file, then index) and enqueue a new job, or answer it from a stored identical result.

    `created` gets an entry once the record is in the index: from then on the job exists (the
    reaper enqueues a queued record whose RQ job is missing), so its idempotency key must stay.
    """
    rec = JobRecord(
        id=job_id, kind=job.kind, owner=who.owner, request=payload, request_hash=rhash,
        seq=ctx.index.next_seq(), max_attempts=ctx.settings.max_attempts,
        group_id=group_id_for(job_id) if job.kind == "batch" else None,
        queue=defaults.QUEUE_FOR_KIND[job.kind] if ctx.backend.mode == "queued" else "inline",
    )
    stored = ctx.store.get_ref("results", rhash) if (reuse and ctx.settings.reuse_results) else None
    if stored and ctx.store.exists(stored["result_sha"]) and (stored.get("weights_sha") is None or ctx.store.exists(stored["weights_sha"])):
        now = time.time()
        rec.status, rec.started_at, rec.finished_at, rec.reused = "finished", now, now, True
        rec.result_sha, rec.weights_sha, rec.plot_sha = stored["result_sha"], stored.get("weights_sha"), stored.get("plot_sha")
        rec.note("answered from the stored result of an identical request (same content hash)")
        _persist(ctx, rec)
        ctx.index.create(rec)
        created.append(True)
        if ctx.metrics:
            ctx.metrics.submitted.labels(job.kind, "reused").inc()
        return _accepted(rec, ctx)

    rec.note("accepted")
    _persist(ctx, rec)
    ctx.index.create(rec)
    created.append(True)
    ctx.backend.enqueue(rec)
    if ctx.metrics:
        ctx.metrics.submitted.labels(job.kind, "queued").inc()
    return _accepted(rec, ctx)


@router.get("/jobs/{job_id}", responses=ERRORS, summary="A job: status, progress, result or error (?wait= long-polls)")
async def get_job(
    request: Request,
    job_id: str,
    who: Annotated[Principal, Depends(principal)],
    wait: Annotated[float, Query(ge=0, le=3600, allow_inf_nan=False, description="seconds to wait for a final state")] = 0.0,
) -> JSONResponse:
    """Async to long-poll without holding a thread (see the module docstring for where each read runs)."""
    ctx = get_ctx(request)
    deadline = time.monotonic() + min(wait, ctx.settings.max_wait_seconds)
    view = await _read_view(ctx, job_id, who, deadline)
    delay = 0.02
    while view is None:
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)
        view = await _read_view(ctx, job_id, who, deadline)
    return JSONResponse(view)  # already JSON-able: skip FastAPI's jsonable_encoder pass


async def _read_view(ctx: AppContext, job_id: str, who: Principal, deadline: float) -> dict[str, Any] | None:
    """The job's view once it is final or the long-poll deadline has passed, else None (poll again)."""
    rec = await ctx.records.get(job_id) if ctx.records is not None and valid_job_id(job_id) else None
    if rec is None:  # not in the index (store copy, or a 404), or no async reader: the full path
        return (await run_in_threadpool(_read_job, ctx, job_id, who, deadline))[1]
    if not who.can_see(rec.owner):
        raise job_not_found(job_id)
    if not rec.final and time.monotonic() < deadline:
        return None
    if rec.status in ("running", "finished"):  # progress from RQ, the result from the store
        return await run_in_threadpool(job_view, rec, ctx)
    return job_view(rec, ctx)


class JobReadFastPath:
    """Pure ASGI middleware that answers the common poll, ``GET /v1/jobs/{id}`` without a query string, before
    FastAPI's routing, exception middleware and dependency solving.

    It does what :func:`get_job` does with ``wait=0``: :func:`service.deps.authenticate` (every configured digest
    compared), then :func:`_read_view` (tenant check, 404 for another key's job), the same ``JSONResponse``, and a
    :class:`~service.problems.ProblemError` rendered as the app's handler renders it. Everything else -- another
    method or path, a query string (``?wait=`` long-polls), a root path, no asyncio record reader (inline mode, or
    a TestClient without its lifespan), or any other exception (e.g. Redis unreachable) -- goes to the app, whose
    route and handlers answer it as before.
    """

    PREFIX = "/v1/jobs/"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string") or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        job_id = path[len(self.PREFIX):]
        ctx: AppContext | None = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        if not path.startswith(self.PREFIX) or not job_id or "/" in job_id or ctx is None or ctx.records is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            who = authenticate(ctx.settings, request)
            view = await _read_view(ctx, job_id, who, time.monotonic())
            response: Response = JSONResponse(view)
        except ProblemError as exc:
            response = problem_response(exc.status, exc.title, exc.detail, exc.slug, exc.errors, exc.headers, request.url.path)
        except Exception:  # the app's handlers decide (503 queue-unavailable, 500 internal-error, ...)
            await self.app(scope, receive, send)
            return
        ctx.fast_reads += 1
        await response(scope, receive, send)


def _read_job(ctx: AppContext, job_id: str, who: Principal, deadline: float) -> tuple[JobRecord, dict[str, Any] | None]:
    """The record, and its view once it is final or the long-poll deadline has passed (else None: poll again)."""
    rec = load_record(ctx, job_id, who)
    if rec.final or time.monotonic() >= deadline:
        return rec, job_view(rec, ctx)
    return rec, None


@router.get("/jobs", responses=ERRORS, summary="Your jobs, newest first (cursor pagination)")
def list_jobs(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    status: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    items, next_cursor = list_summaries(ctx, who, status=status, kind=kind, limit=limit,
                                        before=int(cursor) if cursor is not None else None)
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/jobs/{job_id}", responses=ERRORS, summary="Cancel a queued or running job")
def cancel_job(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]) -> JSONResponse:
    ctx = get_ctx(request)
    rec = load_record(ctx, job_id, who)
    if rec.final:
        raise ProblemError(409, "Conflict", f"job {job_id} is already {rec.status}; nothing to cancel", slug="job-final")
    new = lifecycle.request_cancel(ctx.index, ctx.store, job_id) or rec  # a store failure: 503 store-unavailable
    if new.status == "cancelled":
        ctx.backend.cancel_queued(new)
    return JSONResponse(job_view(new, ctx), status_code=200 if new.status == "cancelled" else 202)


def _artifact(ctx: AppContext, request: Request, rec: JobRecord, sha: str | None, what: str, media_type: str, filename: str) -> Response:
    if rec.status != "finished":
        raise ProblemError(409, "Conflict", f"job {rec.id} is {rec.status}; {what} exist only once it has finished", slug="job-not-finished")
    if not sha or not ctx.store.exists(sha):
        raise ProblemError(404, "Not found", f"job {rec.id} has no stored {what}", slug="artifact-not-found")
    etag = f'"{sha}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable", "Content-Disposition": f'attachment; filename="{filename}"'}
    inm = request.headers.get("if-none-match")
    # RFC 9110 13.1.2: weak comparison (a W/ prefix matches), and "*" matches any current representation
    if inm and any(t.strip() == "*" or t.strip().removeprefix("W/") == etag for t in inm.split(",")):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(ctx.store.size(sha))
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=media_type)
    return StreamingResponse(ctx.store.iter_chunks(sha), media_type=media_type, headers=headers)


@router.api_route("/jobs/{job_id}/weights", methods=["GET", "HEAD"], responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
                  summary="Rectified weights (.safetensors); ETag = sha256")
def get_weights(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]) -> Response:
    ctx = get_ctx(request)
    rec = load_record(ctx, job_id, who)
    if rec.kind != "rectify":
        raise ProblemError(404, "Not found", f"job {job_id} is a {rec.kind} job; only rectify jobs have weights", slug="artifact-not-found")
    return _artifact(ctx, request, rec, rec.weights_sha, "weights", "application/octet-stream", f"{job_id}.safetensors")


@router.api_route("/jobs/{job_id}/onnx", methods=["GET", "HEAD"], responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
            summary="An ONNX upload's rectify job: the uploaded graph with the rectified initializers")
def get_onnx(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]) -> Response:
    ctx = get_ctx(request)
    rec = load_record(ctx, job_id, who)
    if rec.kind != "rectify" or (rec.request.get("model") or {}).get("arch") != "onnx":
        raise ProblemError(404, "Not found", f"job {job_id} is not a rectify job of an ONNX upload", slug="artifact-not-found")
    sha = None
    if rec.status == "finished" and rec.result_sha:
        sha = (ctx.result_json(rec.result_sha) or {}).get("onnx_sha256")
    return _artifact(ctx, request, rec, sha, "rectified ONNX file", "application/octet-stream", f"{job_id}.onnx")


@router.api_route("/jobs/{job_id}/plot", methods=["GET", "HEAD"], responses={**ERRORS, 200: {"content": {"image/png": {}}}},
                  summary="Signal-propagation plot (PNG) of a propagation job")
def get_plot(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]) -> Response:
    ctx = get_ctx(request)
    rec = load_record(ctx, job_id, who)
    if rec.kind != "propagation":
        raise ProblemError(404, "Not found", f"job {job_id} is a {rec.kind} job; only propagation jobs have a plot", slug="artifact-not-found")
    return _artifact(ctx, request, rec, rec.plot_sha, "plot", "image/png", f"{job_id}.png")
