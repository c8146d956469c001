"""/v1/models, /healthz, /readyz, /metrics."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from initscore.contract import ENGINE_VERSION
from initscore.models import list_models
from service.deps import Principal, get_ctx, principal
from service.metrics import CONTENT_TYPE
from service.problems import problem_response
from service.validation import known_proxies

router = APIRouter()


@router.get("/v1/models", tags=["models"], summary="Registered architectures and their argument schemas")
async def models(who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    return {"models": list_models(), "proxies": list(known_proxies()), "engine_version": ENGINE_VERSION}


@router.get("/healthz", tags=["health"], summary="Liveness: the API process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="Readiness: queue reachable, a worker listening, artifact store writable")
async def readyz(request: Request) -> Response:
    ctx = get_ctx(request)
    try:
        ok, detail = ctx.backend.ready()
    except Exception as exc:
        return problem_response(503, "Service unavailable", f"the job queue (Redis) is unreachable ({type(exc).__name__})",
                                "queue-unavailable", headers={"Retry-After": "5"})
    if not ok:
        return problem_response(503, "Service unavailable", "no worker is listening on the job queues; start `initscore worker`",
                                "no-worker", headers={"Retry-After": "5"})
    if not ctx.store.writable():
        return problem_response(503, "Service unavailable", f"the artifact store at {ctx.settings.artifact_dir} is not writable",
                                "store-unavailable", headers={"Retry-After": "30"})
    from fastapi.responses import JSONResponse

    return JSONResponse({"status": "ready", "mode": ctx.backend.mode, **detail})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics (needs a key when keys are configured)")
async def metrics(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    ctx = get_ctx(request)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
