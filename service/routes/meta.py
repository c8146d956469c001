"""/v1/models, /healthz, /readyz, /metrics."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from initscore.contract import ENGINE_VERSION
from initscore.models import list_models
from service.deps import Principal, admin_principal, get_ctx, principal
from service.metrics import CONTENT_TYPE
from service.problems import problem_response
from service.validation import known_proxies

router = APIRouter()


@router.get("/v1/models", tags=["models"], summary="Registered architectures and their argument schemas")
def models(who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    return {"models": list_models(), "proxies": list(known_proxies()), "engine_version": ENGINE_VERSION}


@router.get("/healthz", tags=["health"], summary="Liveness: the API process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


_SLUG = {"redis": ("queue-unavailable", "5"), "store": ("store-unavailable", "30"), "workers": ("no-worker", "5")}


@router.get("/readyz", tags=["health"], summary="Readiness: Redis answers, the artifact store is writable, a worker beat recently")
def readyz(request: Request) -> Response:
    """200 only if every check passes; else 503 problem+json whose ``checks`` say which failed and why."""
    ctx = get_ctx(request)
    checks, info = ctx.backend.readiness()
    problem = ctx.store.probe()
    checks = {"redis": checks.get("redis"), "store": "ok" if problem is None else f"failed: {problem}", "workers": checks["workers"]}
    checks = {k: v for k, v in checks.items() if v is not None}
    failed = [k for k, v in checks.items() if not v.startswith("ok")]
    if failed:
        slug, retry = _SLUG[failed[0]]
        detail = "; ".join(f"{k}: {checks[k].removeprefix('failed: ')}" for k in failed)
        return problem_response(503, "Service unavailable", f"not ready -- {detail}", slug, headers={"Retry-After": retry},
                                extra={"checks": checks})
    return JSONResponse({"status": "ready", "mode": ctx.backend.mode, "checks": checks, **info})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics of the whole deployment (admin key when keys are configured)")
def metrics(request: Request, who: Annotated[Principal, Depends(admin_principal)]) -> Response:
    ctx = get_ctx(request)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
