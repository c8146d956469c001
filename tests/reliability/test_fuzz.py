"""Bad input: schemathesis against the app's own OpenAPI schema -> zero 5xx; hand-written hostile bodies -> 4xx problem+json.

The app runs in queued mode on a REAL redis-server (no worker, so `/readyz` answers a
legitimate 503 "no-worker"). Every generated request goes through the full ASGI
stack (BodyGuard middleware, FastAPI validation, `check_request`, the Redis index).
A module-level counter proves at least 1,000 requests were generated and sent.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from svc_helpers import MLP_SCORE, RedisServer, free_port, with_field

PROBLEM = "application/problem+json"
PER_OPERATION = 100  # 11 operations x 100 examples -> >= 1,000 requests
SENT: dict[str, Any] = {"total": 0, "by_status": {}, "five_xx": []}


_BASE = Path(tempfile.mkdtemp(prefix="initscore-fuzz-"))
_PORT = free_port()


def _make_app() -> Any:
    """The app is built at import (schemathesis needs its schema); its Redis client connects lazily."""
    from redis import Redis

    from service.app import create_app
    from initscore.server.queue import RQBackend
    from initscore.server.settings import Settings

    (_BASE / "data").mkdir(exist_ok=True)
    st = Settings(redis_url=f"redis://127.0.0.1:{_PORT}/0", artifact_dir=_BASE / "artifacts", allowed_roots=[str(_BASE / "data")],
                  max_wait_seconds=0.05, heartbeat_ttl=2.0, reaper_interval=60.0)
    return create_app(st, RQBackend(st, redis=Redis.from_url(st.redis_url)))


APP = _make_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def fuzz_redis() -> Iterator[RedisServer]:
    srv = RedisServer(_BASE / "redis", port=_PORT).start()
    yield srv
    srv.stop()
    shutil.rmtree(_BASE, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_never_5xx(case) -> None:
    resp = case.call()
    SENT["total"] += 1
    SENT["by_status"][resp.status_code] = SENT["by_status"].get(resp.status_code, 0) + 1
    legit_503 = resp.status_code == 503 and case.path == "/readyz"
    if resp.status_code >= 500 and not legit_503:
        SENT["five_xx"].append((case.method, case.formatted_path, resp.status_code, resp.text[:300]))
    assert resp.status_code < 500 or legit_503, f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:500]}"
    if resp.status_code >= 400:
        ctype = resp.headers.get("content-type") or [""]
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith(PROBLEM), (resp.status_code, resp.headers)


def test_fuzz_volume_and_zero_5xx() -> None:
    """Runs after the generated tests (file order): >= 1,000 requests, none answered 5xx."""
    print(f"\nfuzz: {SENT['total']} generated requests, status counts {dict(sorted(SENT['by_status'].items()))}")
    assert SENT["total"] >= 1000, SENT
    assert SENT["five_xx"] == []


# ------------------------------------------------------------------ hand-written hostile inputs
def _problem(resp, status: int | tuple[int, ...]) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == resp.status_code and body["type"].startswith("urn:initscore:problem:")
    assert body["title"] and body["detail"]
    return body


def _post_raw(tc, content: bytes, ctype: str = "application/json"):
    return tc.post("/v1/jobs", content=content, headers={"content-type": ctype})


def _req(**over: Any) -> dict:
    """MLP_SCORE with fields replaced: _req(model__args={...}) sets model.args."""
    r = MLP_SCORE
    for path, value in over.items():
        r = with_field(path.replace("__", "."), value, r)
    return r


@pytest.mark.parametrize("over, loc", [
    ({"data__batch_size": 10**18}, "data.batch_size"),           # huge batch size (int64-overflowing magnitude)
    ({"data__batch_size": 2**70}, "data.batch_size"),            # beyond int64
    ({"data__batch_size": -5}, "data.batch_size"),
])
def test_huge_batch_sizes(queued, over, loc) -> None:
    _, backend, tc = queued()
    body = _problem(tc.post("/v1/jobs", json=_req(**over)), 422)
    assert any(e["loc"].startswith(loc) for e in body["errors"]), body
    assert backend.queue_depths()["initscore-score"] == 0


@pytest.mark.parametrize("iters", [10**9, 2**80, -1, 1.5e300])
def test_absurd_iteration_counts(queued, iters) -> None:
    _, backend, tc = queued()
    req = {"kind": "rectify", "model": MLP_SCORE["model"], "data": MLP_SCORE["data"], "options": {"iters": iters}}
    body = _problem(tc.post("/v1/jobs", json=req), 422)
    assert any(e["loc"].startswith("options") for e in body["errors"]), body
    assert backend.queue_depths()["initscore-rectify"] == 0


@pytest.mark.parametrize("model", [
    {"arch": "wrn", "args": {"depth": 28, "width": 10**6}},
    {"arch": "wrn", "args": {"depth": 10**6, "width": 10}},
    {"arch": "mlp", "args": {"in_features": 48, "hidden": 10**9, "depth": 3, "num_classes": 4}},
    {"arch": "mlp", "args": {"in_features": 48, "hidden": 2**64, "depth": 3, "num_classes": 4}},
])
def test_giant_parameter_counts(queued, model) -> None:
    _, backend, tc = queued()
    _problem(tc.post("/v1/jobs", json=_req(model=model)), 422)
    batch = {"kind": "batch", "models": [MLP_SCORE["model"], model], "data": MLP_SCORE["data"]}
    _problem(tc.post("/v1/jobs", json=batch), 422)
    assert sum(backend.queue_depths().values()) == 0


def test_deeply_nested_json_is_4xx(queued) -> None:
    """A 100k-deep nested list in the body must not blow the stack into a 500."""
    _, backend, tc = queued(max_body_bytes=1_000_000)
    for depth in (1_000, 100_000):
        deep = b'{"kind":"score","model":{"arch":"mlp","args":' + b"[" * depth + b"]" * depth + b'},"data":{"kind":"synthetic"}}'
        _problem(_post_raw(tc, deep), (400, 422))
        deep_obj = b'{"kind":"score","model":' + b'{"a":' * depth + b"1" + b"}" * depth + b',"data":{"kind":"synthetic"}}'
        _problem(_post_raw(tc, deep_obj), (400, 422))
    # deep nesting inside a free-form field (model.args values, nb201 cell)
    nested: Any = 1
    for _ in range(200):
        nested = {"x": nested}
    _problem(tc.post("/v1/jobs", json=_req(model__args={"hidden": nested})), 422)
    _problem(tc.post("/v1/jobs", json=_req(model={"arch": "nb201", "args": {"cell": nested}})), 422)
    assert sum(backend.queue_depths().values()) == 0


@pytest.mark.parametrize("root", [
    "{data}/../../../../etc", "{data}/./../{name}-sibling", "/proc/self/root/etc", "{data}/\x00/etc",
    "../../shared/data", "~/.ssh", "{data}/" + "a/" * 2000, "file:///etc/passwd", "", "\\\\server\\share",
])
def test_path_traversal_in_dataset_roots(queued, tmp_path, root) -> None:
    settings, backend, tc = queued()
    data_dir = settings.allowed_roots[0]
    root = root.replace("{data}", data_dir).replace("{name}", Path(data_dir).name)
    (Path(data_dir).parent / (Path(data_dir).name + "-sibling")).mkdir(exist_ok=True)
    _problem(tc.post("/v1/jobs", json=_req(data={"kind": "cifar10", "root": root, "batch_size": 8})), 422)
    assert sum(backend.queue_depths().values()) == 0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
@pytest.mark.parametrize("field", ["lr", "overlap", "gamma", "min_scale"])
def test_non_finite_numbers(queued, literal, field) -> None:
    _, backend, tc = queued()
    body = (b'{"kind":"rectify","model":' + json.dumps(MLP_SCORE["model"]).encode() + b',"data":'
            + json.dumps(MLP_SCORE["data"]).encode() + b',"options":{"iters":3,"' + field.encode() + b'":' + literal + b"}}")
    _problem(_post_raw(tc, body), (400, 422))
    assert sum(backend.queue_depths().values()) == 0


def test_oversized_uploads(queued) -> None:
    _, backend, tc = queued(max_body_bytes=4096)
    # a large but otherwise valid batch (many models), declared length and chunked
    batch = {"kind": "batch", "models": [MLP_SCORE["model"]] * 200, "data": MLP_SCORE["data"]}
    raw = json.dumps(batch).encode()
    assert len(raw) > 4096
    _problem(_post_raw(tc, raw), 413)
    _problem(tc.post("/v1/jobs", content=iter([raw[i:i + 512] for i in range(0, len(raw), 512)]),
                     headers={"content-type": "application/json"}), 413)
    # a lying Content-Length header
    _problem(tc.post("/v1/jobs", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"}), 400)
    assert sum(backend.queue_depths().values()) == 0


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=x", "application/octet-stream", "application/xml",
                                   "text/json", "", "application/jsonp", "image/png"])
def test_wrong_content_types(queued, ctype) -> None:
    _, backend, tc = queued()
    _problem(_post_raw(tc, json.dumps(MLP_SCORE).encode(), ctype), 415)
    assert sum(backend.queue_depths().values()) == 0


@pytest.mark.parametrize("raw", [b"", b"null", b"\xff\xfe{}", b'"' + b"\\u0000" * 50 + b'"', b"{" * 10, b"1" * 5000,
                                 b'{"kind":"score","kind":"rectify"}', "{\"kind\":\"sc\u00f6re\"}".encode("utf-16")])
def test_garbage_bodies(queued, raw) -> None:
    _, backend, tc = queued()
    _problem(_post_raw(tc, raw), (400, 422))
    assert sum(backend.queue_depths().values()) == 0


def test_hostile_headers_and_params(queued) -> None:
    _, backend, tc = queued()
    _problem(tc.post("/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k" * 10_000}), 422)
    for q in ("limit=0", "limit=-1", "limit=99999999999999999999", "cursor=abc", "cursor=" + "9" * 40, "status=weird", "kind=train"):
        _problem(tc.get(f"/v1/jobs?{q}"), 422)
    for q in ("wait=nan", "wait=inf", "wait=1e400", "wait=-0.5"):
        _problem(tc.get(f"/v1/jobs/j_{'0' * 32}?{q}"), (404, 422))
    for jid in ("%00", "j_" + "f" * 5000, "..%2f..%2fetc%2fpasswd", "%2e%2e"):
        _problem(tc.get(f"/v1/jobs/{jid}"), (404, 422))
        _problem(tc.get(f"/v1/groups/{jid}"), (404, 422))
    assert sum(backend.queue_depths().values()) == 0
