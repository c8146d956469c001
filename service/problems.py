"""RFC 9457 problem details (``application/problem+json``) for every error response.

Every 4xx (and the rare 5xx) the API returns is an object with ``type``, ``title``,
``status``, ``detail`` and, for validation failures, ``errors`` (a list of
``{"loc": "...", "msg": "..."}``) saying what to fix.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from initscore.contract import JOB_KINDS
from initscore.errors import InitscoreError

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:initscore:problem:"
log = logging.getLogger("initscore.service")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers


def problem_body(
    status: int, title: str, detail: str, slug: str, errors: list[dict[str, Any]] | None = None, instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem object; `extra` adds extension members (RFC 9457 section 3.2), e.g. /readyz's ``checks``."""
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail, **(extra or {})}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return body


def problem_response(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, title, detail, slug, errors, instance, extra), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


_STATUS_TITLES = {
    400: ("Bad request", "bad-request"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not-found"),
    405: ("Method not allowed", "method-not-allowed"),
    406: ("Not acceptable", "not-acceptable"),
    409: ("Conflict", "conflict"),
    413: ("Request body too large", "body-too-large"),
    415: ("Unsupported media type", "unsupported-media-type"),
    422: ("Invalid request", "validation-error"),
    503: ("Service unavailable", "unavailable"),
}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for p in parts:
        if p.isdigit():
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out or "body"


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, str, str, list[dict[str, Any]]]:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        e = next(e for e in errs if e.get("type") == "json_invalid")
        ctx = e.get("ctx") or {}
        msg = f"request body is not valid JSON ({ctx.get('error', e.get('msg', 'parse error'))})"
        return 400, "Malformed JSON", msg, "malformed-json", [{"loc": "body", "msg": msg}]
    out = []
    for e in errs:
        loc = list(e.get("loc", ()))
        # drop the discriminator tag pydantic inserts for tagged unions ("score", "rectify", ...)
        if len(loc) >= 2 and loc[0] == "body" and loc[1] in JOB_KINDS:
            loc = ["body", *loc[2:]]
        entry = {"loc": _loc(loc), "msg": str(e.get("msg", "invalid"))}
        if entry not in out:  # a rule of the request found by pydantic and again on the body's parts: once
            out.append(entry)
    detail = "; ".join(f"{x['loc']}: {x['msg']}" for x in out[:5])
    if len(out) > 5:
        detail += f"; and {len(out) - 5} more"
    return 422, "Invalid request", detail, "validation-error", out


def install_handlers(app: FastAPI) -> None:
    """Map every exception that can leave a route to problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.slug, exc.errors, exc.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, title, detail, slug, errors = _validation_errors(exc)
        return problem_response(status, title, detail, slug, errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title, slug = _STATUS_TITLES.get(exc.status_code, ("Error", f"http-{exc.status_code}"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        return problem_response(exc.status_code, title, detail, slug, headers=getattr(exc, "headers", None), instance=request.url.path)

    @app.exception_handler(InitscoreError)
    async def _engine(request: Request, exc: InitscoreError) -> JSONResponse:
        slug = type(exc).__name__.replace("Error", "").lower() + "-error"
        return problem_response(exc.status, exc.title, str(exc), slug, instance=request.url.path)

    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        @app.exception_handler(RedisConnectionError)
        @app.exception_handler(RedisTimeoutError)
        async def _redis(request: Request, exc: Exception) -> JSONResponse:
            log.warning("redis unavailable: %s", type(exc).__name__)
            return problem_response(
                503, "Service unavailable", "the job queue (Redis) is unreachable; retry shortly", "queue-unavailable",
                headers={"Retry-After": "5"}, instance=request.url.path,
            )
    except ImportError:  # pragma: no cover - redis is a dependency
        pass

    from initscore.server.storage import StoreError

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("artifact store failure: %s", exc)
        return problem_response(
            503, "Service unavailable", f"the artifact store cannot be used: {exc}", "store-unavailable",
            headers={"Retry-After": "30"}, instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "Internal server error", "an unexpected error occurred; it has been logged", "internal-error", instance=request.url.path
        )
