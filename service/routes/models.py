"""/v1/models uploads: your own network as an ONNX file, checked torch-free, stored content-addressed per key."""
from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from initscore.errors import InitscoreError
from service.deps import AppContext, Principal, get_ctx, principal
from service.problems import PROBLEM_JSON, ProblemError
from initscore.server.storage import StoreError

router = APIRouter(prefix="/v1", tags=["models"])

PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "problem details (RFC 9457)"}
ONNX_TYPES = ("application/octet-stream", "application/onnx")


def _ref(owner: str, sha: str) -> str:
    return f"{owner}.{sha}"


def visible_upload(ctx: AppContext, who: Principal, sha: str) -> dict[str, Any] | None:
    """The stored summary of upload ``sha`` if ``who`` uploaded it (an admin: anyone did), else None."""
    doc = ctx.store.get_ref("models", _ref(who.owner, sha))
    if doc is None and who.admin:
        doc = ctx.store.get_ref("models", sha)
    return doc


def _view(sha: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": sha, "spec": {"arch": "onnx", "args": {"sha256": sha}}, "summary": summary,
            "links": {"self": f"/v1/models/{sha}"}}


@router.post("/models", status_code=201, responses={400: PROBLEM, 401: PROBLEM, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM,
                                                     503: PROBLEM},
             openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}},
             summary="Upload your own network as an ONNX file (body: the file's bytes)")
async def upload_model(request: Request, who: Annotated[Principal, Depends(principal)]) -> JSONResponse:
    ctx = get_ctx(request)
    data = await request.body()
    from initscore.onnx_model import check

    try:
        summary = (await run_in_threadpool(check, data, max_bytes=ctx.settings.max_model_bytes)).model_dump()
    except InitscoreError as exc:
        raise ProblemError(422, "Invalid ONNX model", str(exc), slug="validation-error",
                           errors=[{"loc": "body", "msg": str(exc)}]) from None
    sha = hashlib.sha256(data).hexdigest()
    known = visible_upload(ctx, who, sha) is not None
    try:
        if not ctx.store.exists(sha):
            await run_in_threadpool(ctx.store.put_bytes, data)
        ctx.store.put_ref("models", sha, summary)
        ctx.store.put_ref("models", _ref(who.owner, sha), summary)
    except StoreError as exc:
        raise ProblemError(503, "Service unavailable", f"the artifact store cannot accept the model: {exc}",
                           slug="store-unavailable") from exc
    return JSONResponse(_view(sha, summary), status_code=200 if known else 201,
                        headers={"Location": f"/v1/models/{sha}"})


@router.get("/models/{sha256}", responses={401: PROBLEM, 404: PROBLEM}, summary="One of your uploaded models")
def get_upload(request: Request, sha256: str, who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    ctx = get_ctx(request)
    doc = visible_upload(ctx, who, sha256) if len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256) else None
    if doc is None:
        raise ProblemError(404, "Not found", f"no uploaded model {sha256[:80]!r} for this key", slug="model-not-found")
    return _view(sha256, doc)
