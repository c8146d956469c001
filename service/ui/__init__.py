"""The /ui page: a signed-in view of the caller's jobs, a job's results and plots, and (admins) queues and workers.

Server-rendered: the shell page and its two static files carry no data; every fragment (job list, job page,
admin page) is HTML rendered here from the same views the JSON API returns, for the key the browser sends
(``Authorization: Bearer``, kept only in the browser's sessionStorage). So a fragment shows exactly what the
API would show that key: its own jobs, or everything for an admin key; with keys disabled (single-user mode)
every page works without one. No CDN, no external script: the page works offline.
"""
from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from initscore.contract import JobKind, JobState
from service.deps import Principal, get_ctx, principal
from service.problems import ProblemError
from service.ui import render
from service.views import job_view, list_summaries, load_record

router = APIRouter(prefix="/ui", include_in_schema=False)

_STATIC = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}  # index.html: the shell


def _static(name: str) -> str:
    return resources.files("service.ui").joinpath("static", name).read_text()


@router.get("", response_class=HTMLResponse)
def shell() -> HTMLResponse:
    """The page itself (no data: the script fetches the fragments with the key of this browser session)."""
    return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in _STATIC:
        raise ProblemError(404, "Not found", f"no static file {name!r}", slug="not-found")
    return Response(_static(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})


@router.get("/fragments/whoami", response_class=HTMLResponse)
def whoami(request: Request, who: Annotated[Principal, Depends(principal)]) -> HTMLResponse:
    keys = not get_ctx(request).settings.open_mode
    role = "admin" if who.admin else "user"
    admin = who.admin or not keys
    text = f"signed in as {role}" if keys else "single-user mode (no API keys configured)"
    return HTMLResponse(f'<span data-admin="{str(admin).lower()}">{render.e(text)}</span>')


@router.get("/fragments/jobs", response_class=HTMLResponse)
def jobs_fragment(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    status: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> HTMLResponse:
    ctx = get_ctx(request)
    items, next_cursor = list_summaries(ctx, who, status=status, kind=kind, limit=limit,
                                        before=int(cursor) if cursor is not None else None)
    progress: dict[str, dict[str, Any] | None] = {}
    running = [it["id"] for it in items if it["status"] == "running"]
    for rec in ctx.index.get_many(running) if running else []:
        if rec is not None:
            try:
                progress[rec.id] = ctx.backend.progress(rec)
            except Exception:  # progress is a courtesy; the status is what counts
                progress[rec.id] = None
    return HTMLResponse(render.jobs_list(items, progress, next_cursor))


@router.get("/fragments/jobs/{job_id}", response_class=HTMLResponse)
def job_fragment(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]) -> HTMLResponse:
    ctx = get_ctx(request)
    rec = load_record(ctx, job_id, who)  # 404 for a job of another key, as in the API
    return HTMLResponse(render.job_page(job_view(rec, ctx)))


def _workers(backend: Any) -> list[dict[str, Any]]:
    if getattr(backend, "mode", "") != "queued":
        n = getattr(backend.settings, "inline_workers", 1)
        return [{"name": "inline", "state": f"{n} thread(s) in the API process", "queues": ["inline"]}]
    from rq import Worker

    out = []
    for w in Worker.all(connection=backend.redis):
        hb = w.last_heartbeat
        out.append({"name": w.name, "state": w.get_state(), "queues": w.queue_names(),
                    "current_job": w.get_current_job_id(),
                    "last_heartbeat": hb.replace(tzinfo=dt.timezone.utc).isoformat() if hb else None})
    return sorted(out, key=lambda x: x["name"])


@router.get("/fragments/admin", response_class=HTMLResponse)
def admin_fragment(request: Request, who: Annotated[Principal, Depends(principal)]) -> HTMLResponse:
    ctx = get_ctx(request)
    if not (who.admin or ctx.settings.open_mode):  # single-user mode: the one user runs the box
        raise ProblemError(403, "Forbidden", "queues and workers are shown to admin keys only", slug="forbidden")
    return HTMLResponse(render.admin_page(ctx.backend.queue_depths(), _workers(ctx.backend)))
