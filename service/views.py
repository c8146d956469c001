"""JSON views of job records (what GET /v1/jobs/{id} and friends return)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from service.deps import AppContext, Principal
from service.problems import ProblemError
from initscore.server.records import JobRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def links(rec: JobRecord) -> dict[str, str]:
    out = {"self": f"/v1/jobs/{rec.id}"}
    if rec.kind == "rectify":
        out["weights"] = f"/v1/jobs/{rec.id}/weights"
    if rec.kind == "propagation":
        out["plot"] = f"/v1/jobs/{rec.id}/plot"
    if rec.group_id:
        out["group"] = f"/v1/groups/{rec.group_id}"
    return out


def summary(rec: JobRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "kind": rec.kind,
        "status": rec.status,
        "created_at": iso(rec.created_at),
        "started_at": iso(rec.started_at),
        "finished_at": iso(rec.finished_at),
        "group_id": rec.group_id,
        "error": rec.error.model_dump() if rec.error else None,
        "links": links(rec),
    }


def job_view(rec: JobRecord, ctx: AppContext) -> dict[str, Any]:
    out = summary(rec)
    progress = None
    if rec.status == "running":
        try:
            progress = ctx.backend.progress(rec)
        except Exception:
            progress = None
    elif rec.status == "finished":
        progress = {"fraction": 1.0}
    result = None
    if rec.status == "finished" and rec.result_sha:
        try:
            result = ctx.result_json(rec.result_sha)
        except OSError:
            result = None
            out["error"] = {"type": "store-error", "title": "Result unavailable", "detail": "the stored result cannot be read from the artifact store"}
    out.update(
        progress=progress,
        result=result,
        attempt=rec.attempt,
        max_attempts=rec.max_attempts,
        cancel_requested=rec.cancel_requested,
        reused=rec.reused,
        request_hash=rec.request_hash,
        weights_sha256=rec.weights_sha,
        plot_sha256=rec.plot_sha,
        events=rec.events,
        request=rec.request,
    )
    return out


def valid_job_id(job_id: str) -> bool:
    """'j_' + 32 lowercase hex digits (records.new_job_id)."""
    return job_id.startswith("j_") and len(job_id) == 34 and all(c in "0123456789abcdef" for c in job_id[2:])


def job_not_found(job_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"no job {job_id!r} for this API key", slug="job-not-found")


def load_record(ctx: AppContext, job_id: str, who: Principal) -> JobRecord:
    """The record from the index, else its durable copy in the store; 404 unless `who` may see it."""
    rec = None
    if valid_job_id(job_id):
        rec = ctx.index.get(job_id)
        if rec is None:
            doc = ctx.store.get_ref("jobs", job_id)
            rec = JobRecord.model_validate(doc) if doc else None
    if rec is None or not who.can_see(rec.owner):
        raise job_not_found(job_id)
    return rec


def list_summaries(ctx: AppContext, who: Principal, *, status: str | None = None, kind: str | None = None,
                   limit: int = 50, before: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """``who``'s job summaries (every job for an admin), newest first, filtered; and the next page's cursor."""
    limit = min(limit, ctx.settings.max_list_limit)
    owner = None if who.admin else who.owner
    items: list[dict[str, Any]] = []
    scanned, next_cursor = 0, None
    while len(items) < limit and scanned < 20 * limit:
        rows = ctx.index.page(owner, before, max(limit, 50))
        if not rows:
            break
        recs = ctx.index.get_many([i for _, i in rows])
        for (seq, _), rec in zip(rows, recs):
            scanned += 1
            before = seq
            if rec is None or (status and rec.status != status) or (kind and rec.kind != kind):
                continue
            items.append(summary(rec))
            if len(items) == limit:
                break
        if len(rows) < max(limit, 50) and len(items) < limit:
            before = None
            break
    if before is not None and (len(items) == limit or scanned >= 20 * limit):
        next_cursor = str(before)
    return items, next_cursor
