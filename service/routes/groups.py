"""/v1/groups/{id}: the per-architecture view of a batch job (one group = one batch job)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from service.deps import Principal, get_ctx, principal
from service.problems import ProblemError
from initscore.server.records import job_id_for_group
from service.routes.jobs import ERRORS
from service.views import iso, job_view, load_record

router = APIRouter(prefix="/v1", tags=["groups"])


@router.get("/groups/{group_id}", responses=ERRORS, summary="A batch job's group: ranked per-architecture results")
def get_group(request: Request, group_id: str, who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    ctx = get_ctx(request)
    job_id = job_id_for_group(group_id)
    if job_id is None:
        raise ProblemError(404, "Not found", f"no group {group_id!r} for this API key", slug="group-not-found")
    try:
        rec = load_record(ctx, job_id, who)
    except ProblemError:
        raise ProblemError(404, "Not found", f"no group {group_id!r} for this API key", slug="group-not-found") from None
    if rec.kind != "batch":
        raise ProblemError(404, "Not found", f"no group {group_id!r} for this API key", slug="group-not-found")
    view = job_view(rec, ctx)
    result = view.get("result") or {}
    return {
        "id": group_id,
        "job_id": rec.id,
        "status": rec.status,
        "total": len(rec.request.get("models", [])),
        "rank_by": rec.request.get("rank_by"),
        "progress": view.get("progress"),
        "created_at": iso(rec.created_at),
        "finished_at": iso(rec.finished_at),
        "entries": result.get("entries") if result else None,
        "error": view.get("error"),
        "links": {"self": f"/v1/groups/{group_id}", "job": f"/v1/jobs/{rec.id}"},
    }
