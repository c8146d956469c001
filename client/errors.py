"""Client exceptions; each carries the server's RFC 9457 problem details."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error answer of the service: `status`, `title`, `detail`, `type`, `errors` from problem+json."""

    def __init__(self, status: int, title: str, detail: str, type: str = "about:blank", errors: list[dict[str, Any]] | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.type = status, title, detail, type
        self.errors = errors or []
        self.body = body


class AuthError(ServiceError):
    """401: missing or wrong API key."""


class NotFoundError(ServiceError):
    """404: no such job (or not visible to this key)."""


class ValidationFailed(ServiceError):
    """400/413/415/422: the request is wrong; `errors` says where."""


class ConflictError(ServiceError):
    """409: e.g. weights of a job that has not finished."""


class UnavailableError(ServiceError):
    """503 (or connection failures after retries): the service or its queue is down."""


class JobFailed(Exception):
    """`wait(..., raise_on_failure=True)` on a job that ended failed or cancelled."""

    def __init__(self, job: dict[str, Any]) -> None:
        err = job.get("error") or {}
        super().__init__(f"job {job.get('id')} {job.get('status')}: {err.get('detail', '')}".strip())
        self.job = job


def from_response(status: int, body: Any) -> ServiceError:
    if not isinstance(body, dict):
        body = {"detail": str(body)[:500]}
    cls = {401: AuthError, 403: AuthError, 404: NotFoundError, 409: ConflictError, 503: UnavailableError}.get(status)
    if cls is None:
        cls = ValidationFailed if status in (400, 413, 415, 422) else ServiceError
    return cls(status, str(body.get("title", "Error")), str(body.get("detail", "")), str(body.get("type", "about:blank")),
               body.get("errors"), body)
