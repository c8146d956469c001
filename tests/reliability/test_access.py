"""Access: with API keys configured every route but health needs one; jobs are private to their key (and admins).

Design (service/routes/meta.py, docs/service.md): `/healthz` and `/readyz` stay open
(load balancers and orchestrators probe them without credentials; they reveal no job
data); every `/v1` route needs a key and `/metrics` an admin key. The route table is read from the
app itself, so a route added later without the `principal` dependency fails here.
Real Redis, real burst RQ worker, real jobs of every kind (score, rectify, batch, propagation).
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, REPO, run_worker_burst

PROBLEM = "application/problem+json"
OPEN_ROUTES = {"/healthz", "/readyz"}
SCHEMA_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}  # FastAPI's own docs pages
KEY_A, KEY_B, KEY_ROOT = "alice-Secret-7f3a9c", "bob-Secret-19be44", "root-Secret-c0ffee"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"X-API-Key": KEY_B}
ROOT = {"Authorization": f"Bearer {KEY_ROOT}"}
PROPAGATION = {"kind": "propagation", "model": MLP_SCORE["model"], "data": MLP_SCORE["data"]}
BATCH = {"kind": "batch", "models": [MLP_SCORE["model"], MLP_RECTIFY["model"]], "data": MLP_SCORE["data"]}


def _problem(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == status and body["type"].startswith("urn:initscore:problem:") and body["title"] and body["detail"]
    return body


@pytest.fixture()
def keyed(queued):
    from service.deps import hash_key

    return queued(api_keys=[hash_key(KEY_A), hash_key(KEY_B)], admin_keys=[hash_key(KEY_ROOT)])


@pytest.fixture()
def a_jobs(keyed):
    """One finished job of every kind, submitted with A's key."""
    settings, backend, tc = keyed
    ids = {}
    for name, req in (("score", MLP_SCORE), ("rectify", MLP_RECTIFY), ("batch", BATCH), ("propagation", PROPAGATION)):
        r = tc.post("/v1/jobs", json=req, headers=A)
        assert r.status_code == 202, r.text
        ids[name] = r.json()
    run_worker_burst(backend, settings)
    for name, j in ids.items():
        assert tc.get(f"/v1/jobs/{j['id']}", headers=A).json()["status"] == "finished", name
    return keyed, ids


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app documents in its OpenAPI schema (FastAPI's own /docs pages excluded)."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        for m in ops:
            if m.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE") and path not in SCHEMA_ROUTES:
                out.append((m.upper(), path))
    return out


def _fill(path: str, ids: dict) -> str:
    return (path.replace("{job_id}", ids["rectify"]["id"] if "weights" in path else
                         ids["propagation"]["id"] if "plot" in path else ids["score"]["id"])
            .replace("{group_id}", ids["batch"]["group_id"]))


def test_every_route_but_health_needs_a_key(a_jobs) -> None:
    (settings, backend, tc), ids = a_jobs
    routes = _routes(tc.app)
    assert {p for _, p in routes} >= {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/weights", "/v1/jobs/{job_id}/plot",
                                       "/v1/groups/{group_id}", "/v1/models", "/metrics", "/healthz", "/readyz"}
    checked = 0
    for method, path in routes:
        url = _fill(path, ids)
        raw = method == "POST" and path == "/v1/models"  # the ONNX upload takes the file's bytes
        kw = {"content": b"not onnx"} if raw else ({"json": MLP_SCORE} if method == "POST" else {})
        typed = {"Content-Type": "application/octet-stream"} if raw else {}
        if path in OPEN_ROUTES:
            assert tc.request(method, url).status_code in (200, 503)  # 503 = no worker listening: still no key needed
            continue
        for bad in ({}, {"Authorization": "Bearer not-a-key"}, {"X-API-Key": KEY_A + "x"}, {"Authorization": f"Basic {KEY_A}"},
                    {"Authorization": "Bearer " + KEY_A.upper()}, {"X-API-Key": " "}):
            r = tc.request(method, url, headers={**bad, **typed}, **kw)
            _problem(r, 401)
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers
        checked += 1
    assert checked >= 7
    # nothing was submitted, nothing cancelled by the unauthenticated calls
    assert tc.get(f"/v1/jobs/{ids['score']['id']}", headers=A).json()["status"] == "finished"
    assert len(tc.get("/v1/jobs", headers=ROOT).json()["items"]) == 4


def test_jobs_results_weights_plots_groups_are_private(a_jobs) -> None:
    (settings, backend, tc), ids = a_jobs
    score, rect, batch, prop = ids["score"]["id"], ids["rectify"]["id"], ids["batch"]["id"], ids["propagation"]["id"]
    group = ids["batch"]["group_id"]
    private = [f"/v1/jobs/{score}", f"/v1/jobs/{rect}", f"/v1/jobs/{batch}", f"/v1/jobs/{prop}", f"/v1/jobs/{rect}/weights",
               f"/v1/jobs/{prop}/plot", f"/v1/groups/{group}", f"/v1/jobs/{score}?wait=1"]
    for url in private:
        assert tc.get(url, headers=A).status_code == 200, url
        assert tc.get(url, headers=ROOT).status_code == 200, url
        body = _problem(tc.get(url, headers=B), 404)
        assert KEY_A not in body["detail"]
    # B's 404 for A's job is indistinguishable from a job that never existed
    ghost = _problem(tc.get("/v1/jobs/j_" + "0" * 32, headers=B), 404)
    assert _problem(tc.get(f"/v1/jobs/{score}", headers=B), 404)["type"] == ghost["type"]
    # same bytes for A and admin; B cannot cancel, list or replay A's idempotent submission
    assert tc.get(f"/v1/jobs/{rect}/weights", headers=A).content == tc.get(f"/v1/jobs/{rect}/weights", headers=ROOT).content
    _problem(tc.delete(f"/v1/jobs/{score}", headers=B), 404)
    assert tc.get("/v1/jobs", headers=B).json()["items"] == []
    assert {i["id"] for i in tc.get("/v1/jobs", headers=A).json()["items"]} == {score, rect, batch, prop}
    ia = tc.post("/v1/jobs?reuse=false", json={**MLP_SCORE, "data": {**MLP_SCORE["data"], "seed": 7}},
                 headers={**A, "Idempotency-Key": "k-1"}).json()
    ib = tc.post("/v1/jobs?reuse=false", json={**MLP_SCORE, "data": {**MLP_SCORE["data"], "seed": 7}},
                 headers={**B, "Idempotency-Key": "k-1"})
    assert ib.status_code == 202 and ib.json()["id"] != ia["id"] and "idempotent-replayed" not in ib.headers
    # B reusing A's stored result (same content hash) gets a NEW job of its own, not A's job id
    rb = tc.post("/v1/jobs", json=MLP_SCORE, headers=B).json()
    assert rb["id"] != score
    assert {i["id"] for i in tc.get("/v1/jobs", headers=B).json()["items"]} == {ib.json()["id"], rb["id"]}


def test_keys_never_logged_nor_stored(keyed, caplog) -> None:
    settings, backend, tc = keyed
    caplog.set_level(logging.DEBUG)
    with tc:  # lifespan: start-up banner, reaper thread
        ok = tc.post("/v1/jobs", json=MLP_SCORE, headers=A).json()
        tc.post("/v1/jobs", json=MLP_SCORE, headers={"Authorization": "Bearer wrong-" + KEY_B})
        tc.post("/v1/jobs", json={"kind": "nope"}, headers=A)
        tc.get(f"/v1/jobs/{ok['id']}", headers=B)
        tc.get("/metrics", headers=ROOT)
        run_worker_burst(backend, settings)
        assert tc.get(f"/v1/jobs/{ok['id']}", headers=A).json()["status"] == "finished"
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {getattr(r, 'exc_text', '') or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would be vacuous"
    for key in (KEY_A, KEY_B, KEY_ROOT):
        assert key not in text
    raw = b"".join(backend.redis.dump(k) or b"" for k in backend.redis.keys("*"))
    stored = b"".join(p.read_bytes() for p in Path(settings.artifact_dir).rglob("*") if p.is_file())
    for key in (KEY_A, KEY_B, KEY_ROOT):
        assert key.encode() not in raw and key.encode() not in stored


KEY_NAMES = ("key", "token", "digest", "api_keys", "admin_keys", "secret", "password")


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id.lower())
        elif isinstance(n, ast.Attribute):
            out.add(n.attr.lower())
    return out


def test_key_comparison_is_constant_time_static() -> None:
    """Key material is only ever compared with hmac.compare_digest: no ==, !=, in on names holding keys/digests."""
    deps = (REPO / "service" / "deps.py").read_text()
    assert "hmac.compare_digest" in deps
    tree = ast.parse(deps)
    fns = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "compare_digest" in ast.unparse(fns["_match"]) and "compare_digest" in ast.unparse(fns["authenticate"]) or \
        "_match" in ast.unparse(fns["authenticate"])
    # _match must not short-circuit (no return/break inside the loop)
    loop = next(n for n in ast.walk(fns["_match"]) if isinstance(n, ast.For))
    assert not any(isinstance(n, (ast.Return, ast.Break)) for n in ast.walk(loop))
    offenders = []
    for path in sorted((REPO / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                names = _names(node)
                if any(k in nm for nm in names for k in KEY_NAMES) and "idempotency_key" not in names:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == [], offenders


def test_metrics_are_admin_only_and_schema_pages_are_public(keyed) -> None:
    """/metrics counts every tenant's jobs: admin keys only. The schema pages describe the API, no data: open."""
    settings, backend, tc = keyed
    assert tc.post("/v1/jobs", json=MLP_SCORE, headers=A).status_code == 202
    assert _problem(tc.get("/metrics", headers=B), 403)["type"].endswith(":forbidden")
    assert _problem(tc.get("/metrics", headers=A), 403)
    _problem(tc.get("/metrics"), 401)
    text = tc.get("/metrics", headers=ROOT).text
    assert 'initscore_jobs{state="queued"} 1.0' in text
    for path in ("/openapi.json", "/docs"):  # the one documented rule (docs/service.md, Access)
        assert tc.get(path).status_code == 200
    assert "/metrics" in tc.get("/openapi.json").json()["paths"]
