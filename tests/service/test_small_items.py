"""Small protocol and message fixes found by the adversarial run (issue 23, item 9), through the real app."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from svc_helpers import MLP_RECTIFY, expect_problem, run_worker_burst


def test_weights_conditional_get_and_head(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_RECTIFY).json()
    run_worker_burst(backend, settings)
    url = f"/v1/jobs/{job['id']}/weights"
    full = tc.get(url)
    assert full.status_code == 200
    etag = full.headers["etag"]
    for inm in (etag, f"W/{etag}", "*", f'"nope", W/{etag}'):
        r = tc.get(url, headers={"If-None-Match": inm})
        assert r.status_code == 304 and r.content == b"", (inm, r.status_code)
    assert tc.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    head = tc.head(url)
    assert head.status_code == 200 and head.content == b"", head.status_code
    assert head.headers["content-length"] == str(len(full.content)) and head.headers["etag"] == etag


def test_wait_must_be_finite(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_RECTIFY).json()
    for bad in ("nan", "inf", "-inf"):
        body = expect_problem(tc.get(f"/v1/jobs/{job['id']}", params={"wait": bad}), 422)
        assert "<= 3600" not in body["detail"] + str(body.get("errors")), body
        assert "finite" in str(body.get("errors")).lower(), body


def test_negative_labels_say_so(queued) -> None:
    settings, backend, tc = queued()
    path = Path(settings.allowed_roots[0]) / "neg.npz"
    np.savez(path, x=np.zeros((16, 48), np.float32), y=np.array([-1] + [0] * 15))
    req = {"kind": "score", "model": {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 1, "num_classes": 2}},
           "data": {"kind": "tensors", "root": str(path), "batch_size": 4}}
    job = tc.post("/v1/jobs", json=req).json()
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed" and got["error"]["type"] == "data-error", got
    detail = got["error"]["detail"]
    assert "negative" in detail and "4611686018427387904" not in detail, detail


def test_more_data_classes_than_model_outputs_is_a_422(queued) -> None:
    settings, backend, tc = queued()
    req = {"kind": "score", "model": {"arch": "resnet20", "args": {"num_classes": 10}},
           "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 100000, "batch_size": 4}}
    body = expect_problem(tc.post("/v1/jobs", json=req), 422)
    msgs = {e["loc"]: e["msg"] for e in body["errors"]}
    assert "100000" in msgs["data.num_classes"] and "10" in msgs["data.num_classes"], body
    assert "input size" not in body["detail"]
    ok = {**req, "model": {"arch": "resnet20", "args": {"num_classes": 100000}}}
    assert tc.post("/v1/jobs", json=ok).status_code == 202
