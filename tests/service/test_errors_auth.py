"""Every 4xx path answers problem+json saying what to fix; API keys and per-key visibility."""
from __future__ import annotations

import os

import pytest

from svc_helpers import MLP_SCORE, PROBLEM, with_field
from svc_helpers import expect_problem as _problem



_with = with_field


@pytest.mark.parametrize(
    "req, loc, words",
    [
        (_with("model.arch", "resnet9000"), "model", "unknown architecture"),
        (_with("model.args", {"hidden": 16, "widht": 3}), "model", "unknown argument"),
        (_with("model.args", {"hidden": "wide"}), "model", "integer"),
        (_with("model.args", {"hidden": 0}), "model", ">= 1"),
        (_with("data.batch_size", 5000), "data.batch_size", "over the limit"),
        (_with("data.batch_size", 1), "data.batch_size", "at least 2"),
        (_with("model.args", {"in_features": 1_000_000, "hidden": 65_536, "depth": 4}), "model.args", "parameters, over the cap"),
        (_with("data", {"kind": "cifar10", "root": "/etc"}), "data.root", "outside the allowed dataset roots"),
        (_with("data", {"kind": "cifar10", "root": "{data}/../../etc"}), "data.root", "outside the allowed dataset roots"),
        (_with("data", {"kind": "cifar10", "root": "{data}/escape"}), "data.root", "outside the allowed dataset roots"),
        (_with("options", {"proxies": ["no_such_proxy"]}), "options.proxies[0]", "unknown proxy"),
        (_with("options", {"mode": "batch", "sub_batches": 64}), "options.sub_batches", "exceeds"),
        (_with("data.shape", [3, 4096, 4096]), "data.shape", "over the limit"),
    ],
)
def test_limits_are_422_with_errors(queued, tmp_path, req, loc, words) -> None:
    settings, backend, tc = queued()
    data_dir = settings.allowed_roots[0]
    os.symlink("/etc", os.path.join(data_dir, "escape")) if not os.path.exists(os.path.join(data_dir, "escape")) else None
    if "root" in req["data"]:
        req["data"]["root"] = req["data"]["root"].replace("{data}", data_dir)
    body = _problem(tc.post("/v1/jobs", json=req), 422)
    hits = [e for e in body["errors"] if e["loc"] == loc]
    assert hits and words in hits[0]["msg"], body
    assert backend.queue_depths()["initscore-score"] == 0


def test_iters_and_batch_limits(queued) -> None:
    settings, backend, tc = queued(max_iters=50, max_batch_models=2)
    rect = {"kind": "rectify", "model": MLP_SCORE["model"], "data": MLP_SCORE["data"], "options": {"iters": 51}}
    body = _problem(tc.post("/v1/jobs", json=rect), 422)
    assert body["errors"][0]["loc"] == "options.iters"
    batch = {"kind": "batch", "models": [MLP_SCORE["model"]] * 3, "data": MLP_SCORE["data"]}
    assert _problem(tc.post("/v1/jobs", json=batch), 422)["errors"][0]["loc"] == "models"
    batch["models"] = batch["models"][:2]
    batch["rank_by"] = "snip"
    assert _problem(tc.post("/v1/jobs", json=batch), 422)["errors"][0]["loc"] == "rank_by"
    # select="best" ranks by NIO's objective: a baseline asking for it is told so, nothing is queued
    rect = {"kind": "rectify", "model": MLP_SCORE["model"], "data": MLP_SCORE["data"],
            "options": {"iters": 5, "method": "gradinit", "select": "best"}}
    body = _problem(tc.post("/v1/jobs", json=rect), 422)
    assert "select='best'" in str(body["errors"]), body
    assert backend.queue_depths()["initscore-rectify"] == 0
    # the scale optimizer and its gradient clip: unknown optimizer / negative clip -> 422 naming the field
    for opts, loc in (({"optimizer": "rmsprop"}, "options.optimizer"), ({"optimizer": "rescale_adam",
                                                                         "grad_clip": -1.0}, "options.grad_clip"),
                      ({"scale_tensors": []}, "options.scale_tensors"),
                      ({"scale_tensors": [""]}, "options.scale_tensors[0]"),
                      ({"select": "feasible", "verify_batches": -1}, "options.verify_batches"),
                      ({"verify_batches": 2}, "options")):
        rect = {"kind": "rectify", "model": MLP_SCORE["model"], "data": MLP_SCORE["data"], "options": {"iters": 5, **opts}}
        body = _problem(tc.post("/v1/jobs", json=rect), 422)
        assert any(e["loc"] == loc for e in body["errors"]), body
    assert backend.queue_depths()["initscore-rectify"] == 0


def test_contract_errors_malformed_json_type_size(queued) -> None:
    settings, backend, tc = queued(max_body_bytes=2048)
    # pydantic contract violations -> 422 with locations
    body = _problem(tc.post("/v1/jobs", json=_with("options.overlap", 1.5)), 422)
    assert any(e["loc"].startswith("options.overlap") for e in body["errors"])
    _problem(tc.post("/v1/jobs", json={"kind": "train", "model": {}}), 422)
    _problem(tc.post("/v1/jobs", json=_with("extra_field", 1)), 422)
    _problem(tc.post("/v1/jobs", json=[1, 2]), 422)
    # non-finite numbers are rejected (JSON has no NaN; Python's NaN token is refused too)
    _problem(tc.post("/v1/jobs", content=b'{"kind":"score","model":{"arch":"mlp","args":{"hidden":NaN}},"data":{"kind":"synthetic"}}',
                     headers={"content-type": "application/json"}), 422)
    # malformed JSON -> 400
    b = _problem(tc.post("/v1/jobs", content=b'{"kind": "score",', headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in b["detail"]
    # wrong content type -> 415
    _problem(tc.post("/v1/jobs", content=b"kind=score", headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    _problem(tc.post("/v1/jobs", content=b"{}", headers={"content-type": "text/plain"}), 415)
    # too large -> 413, with and without Content-Length
    big = b'{"kind":"score","pad":"' + b"x" * 4096 + b'"}'
    _problem(tc.post("/v1/jobs", content=big, headers={"content-type": "application/json"}), 413)
    _problem(tc.post("/v1/jobs", content=iter([big[:1000], big[1000:]]), headers={"content-type": "application/json"}), 413)
    # unknown routes / methods / ids
    _problem(tc.get("/v1/nothing"), 404)
    _problem(tc.put("/v1/jobs", json={}), 405)
    _problem(tc.get("/v1/jobs/j_" + "0" * 32), 404)
    _problem(tc.get("/v1/jobs/../../etc/passwd"), 404)
    _problem(tc.get("/v1/jobs/x?wait=-1"), 422)
    assert backend.queue_depths()["initscore-score"] == 0


def test_api_keys_and_visibility(queued) -> None:
    from service.deps import hash_key

    settings, backend, tc = queued(api_keys=[hash_key("alice-key"), hash_key("bob-key")], admin_keys=[hash_key("root-key")])
    A = {"Authorization": "Bearer alice-key"}
    B = {"X-API-Key": "bob-key"}
    R = {"Authorization": "Bearer root-key"}
    r = _problem(tc.post("/v1/jobs", json=MLP_SCORE), 401)
    assert "API key" in r["detail"]
    _problem(tc.post("/v1/jobs", json=MLP_SCORE, headers={"Authorization": "Bearer wrong"}), 401)
    for path in ("/v1/jobs", "/v1/models", "/metrics"):
        _problem(tc.get(path), 401)
    assert tc.get("/healthz").status_code == 200
    job = tc.post("/v1/jobs", json=MLP_SCORE, headers=A).json()
    assert tc.get(f"/v1/jobs/{job['id']}", headers=A).status_code == 200
    _problem(tc.get(f"/v1/jobs/{job['id']}", headers=B), 404)
    _problem(tc.delete(f"/v1/jobs/{job['id']}", headers=B), 404)
    _problem(tc.get(f"/v1/jobs/{job['id']}/weights", headers=B), 404)
    assert tc.get("/v1/jobs", headers=B).json()["items"] == []
    assert [i["id"] for i in tc.get("/v1/jobs", headers=A).json()["items"]] == [job["id"]]
    assert tc.get(f"/v1/jobs/{job['id']}", headers=R).status_code == 200
    assert [i["id"] for i in tc.get("/v1/jobs", headers=R).json()["items"]] == [job["id"]]
    # the same Idempotency-Key from another key is a different job
    j1 = tc.post("/v1/jobs", json=MLP_SCORE, headers={**A, "Idempotency-Key": "same"}).json()
    j2 = tc.post("/v1/jobs", json=MLP_SCORE, headers={**B, "Idempotency-Key": "same"}).json()
    assert j1["id"] != j2["id"]
    # keys never stored: the record holds the digest only
    raw = b"".join(v for k in backend.redis.keys("initscore:job:*") for v in [backend.redis.get(k)])
    assert b"alice-key" not in raw and hash_key("alice-key").encode() in raw


def test_settings_reject_plain_keys() -> None:
    from pydantic import ValidationError

    from initscore.server.settings import Settings

    with pytest.raises(ValidationError):
        Settings(api_keys=["my-plain-secret"])
    s = Settings(api_keys="a" * 64 + "," + "b" * 64)
    assert s.api_keys == ["a" * 64, "b" * 64] and not s.open_mode
