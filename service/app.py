"""The FastAPI application: ``create_app(settings)``; ``uvicorn --factory service.app:create_app``.

Torch-free. In queued mode (``INITSCORE_REDIS_URL`` set) jobs go to RQ queues on
Redis and a reaper thread handles abandoned jobs; in inline mode they run on a
thread pool in this process (``initscore serve --inline``).
"""
from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI

from initscore.contract import ENGINE_VERSION
from service.deps import AppContext, AsyncRecords, make_result_cache
from service.metrics import CountRejected, ServiceMetrics
from service.problems import PROBLEM_JSON, install_handlers, problem_body
from initscore.server.queue import Backend, make_backend
from service import ui
from service.routes import groups, jobs, meta, models
from initscore.server.settings import Settings, get_settings

log = logging.getLogger("initscore.service")

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


class BodyGuard:
    """Pure ASGI middleware: 415 for a non-JSON body, 413 for a body over `max_bytes` (problem+json).

    ``raw`` lists the paths that take a binary upload instead: path -> (accepted content types, byte limit).
    """

    def __init__(self, app: Any, max_bytes: int, raw: dict[str, tuple[tuple[str, ...], int]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.raw = raw or {}

    async def _reject(self, send: Any, status: int, title: str, detail: str, slug: str) -> None:
        body = json.dumps(problem_body(status, title, detail, slug)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        raw = self.raw.get(scope.get("path", ""))
        limit = raw[1] if raw else self.max_bytes
        if raw:
            if ctype not in raw[0]:
                await self._reject(send, 415, "Unsupported media type",
                                   f"send the file's bytes as {' or '.join(raw[0])} (got {ctype or 'no content type'})",
                                   "unsupported-media-type")
                return
        elif not (ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))):
            await self._reject(send, 415, "Unsupported media type",
                               f"send the request body as application/json (got {ctype or 'no content type'})", "unsupported-media-type")
            return
        clen = headers.get(b"content-length")
        if clen is not None:
            try:
                n = int(clen)
            except ValueError:
                await self._reject(send, 400, "Bad request", "invalid Content-Length header", "bad-request")
                return
            if n > limit:
                await self._reject(send, 413, "Request body too large", f"the body has {n} bytes; the limit is {limit}", "body-too-large")
                return
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): buffer up to the limit, then replay
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._reject(send, 413, "Request body too large", f"the body exceeds the limit of {limit} bytes", "body-too-large")
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app; `backend` may be injected (tests pass an RQBackend on their own Redis)."""
    settings = settings or get_settings()
    backend = backend or make_backend(settings)
    ctx = AppContext(settings=settings, backend=backend)
    ctx.metrics = ServiceMetrics(backend)
    ctx.result_json = make_result_cache(backend.store, max_bytes=settings.result_cache_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.open_mode:
            log.warning("!" * 72)
            log.warning("OPEN MODE: no API keys configured (INITSCORE_API_KEYS); anyone who can reach this API can use it")
            log.warning("!" * 72)
        log.info("initscore service: %s mode, artifacts in %s, data roots %s", backend.mode, settings.artifact_dir,
                 list(settings.allowed_roots) or "(none: synthetic data only)")
        backend.start()
        if backend.mode == "queued" and settings.redis_url and hasattr(backend.index, "record_key"):
            ctx.records = AsyncRecords(settings.redis_url, backend.index.record_key)
        try:
            yield
        finally:
            backend.stop()
            if ctx.records is not None:
                records, ctx.records = ctx.records, None
                await records.close()

    app = FastAPI(
        title="initscore service",
        version=ENGINE_VERSION,
        description="Zero-cost initialization and architecture scoring as a queued service (GradCosine, NIO, proxies).",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_handlers(app)
    app.include_router(jobs.router)
    app.include_router(groups.router)
    app.include_router(meta.router)
    app.include_router(models.router)
    app.include_router(ui.router)
    from service.routes.models import ONNX_TYPES

    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes,
                       raw={"/v1/models": (ONNX_TYPES, settings.max_model_bytes)})
    app.add_middleware(jobs.JobReadFastPath)  # ahead of routing (see its docstring)
    app.add_middleware(CountRejected, counter=ctx.metrics.rejected)  # added last: the outermost, sees every answer
    return app
