"""Client behaviour that needs no server: retries on connection errors end in UnavailableError."""
from __future__ import annotations

import time

import pytest

from svc_helpers import free_port


def test_connection_errors_are_retried_then_raise() -> None:
    from client import Client, UnavailableError

    c = Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(UnavailableError) as ei:
        c.list()
    assert time.monotonic() - t0 >= 0.05 + 0.1  # two backoffs slept: it did retry
    assert ei.value.status == 503 and "ConnectError" in ei.value.detail


def test_problem_json_maps_to_exception_classes() -> None:
    from client.errors import AuthError, ConflictError, NotFoundError, ServiceError, ValidationFailed, from_response

    body = {"type": "urn:initscore:problem:validation-error", "title": "Invalid request", "status": 422,
            "detail": "data.batch_size: too big", "errors": [{"loc": "data.batch_size", "msg": "too big"}]}
    e = from_response(422, body)
    assert isinstance(e, ValidationFailed) and e.errors[0]["loc"] == "data.batch_size" and "too big" in str(e)
    assert isinstance(from_response(401, {}), AuthError) and isinstance(from_response(404, {}), NotFoundError)
    assert isinstance(from_response(409, {}), ConflictError) and type(from_response(507, {})) is ServiceError
