"""timm architectures through the real service: validated torch-free by the API, built by the worker with timm's
own initialization, and refused by the worker on the meta device when over the parameter cap (no allocation)."""
from __future__ import annotations

import pytest

from svc_helpers import run_worker_burst

pytest.importorskip("timm")

DATA = {"kind": "synthetic", "shape": [3, 16, 16], "num_classes": 4, "batch_size": 4, "seed": 0}


def test_timm_models_score_and_the_cap_is_enforced_by_the_worker(queued, monkeypatch) -> None:
    settings, backend, tc = queued(max_params=2_000_000)
    monkeypatch.setenv("INITSCORE_MAX_PARAMS", "2000000")  # the worker reads the deployment's settings too
    small = {"arch": "timm:mobilenetv3_small_050", "args": {"num_classes": 4}}   # ~0.6M parameters
    big = {"arch": "timm:resnet50", "args": {"num_classes": 4}}                   # ~23.5M: over this deployment's cap
    ok = tc.post("/v1/jobs", json={"kind": "score", "model": small, "data": DATA, "options": {"mode": "batch"}})
    over = tc.post("/v1/jobs", json={"kind": "score", "model": big, "data": DATA, "options": {"mode": "batch"}})
    batch = tc.post("/v1/jobs", json={"kind": "batch", "models": [small, big], "data": DATA, "options": {"mode": "batch"}})
    assert ok.status_code == over.status_code == batch.status_code == 202, (ok.text, over.text, batch.text)
    bad = tc.post("/v1/jobs", json={"kind": "score", "model": {"arch": "timm:resnet_fifty"}, "data": DATA})
    assert bad.status_code == 422 and "did you mean" in bad.json()["detail"]
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{ok.json()['id']}").json()
    assert got["status"] == "finished", got
    assert 0 < got["result"]["params"] < 2_000_000 and got["result"]["gn"] > 0
    failed = tc.get(f"/v1/jobs/{over.json()['id']}").json()
    assert failed["status"] == "failed" and failed["error"]["type"] == "spec-error"
    assert "over the cap of 2,000,000" in failed["error"]["detail"]
    entries = {e["model"]["arch"]: e for e in tc.get(f"/v1/jobs/{batch.json()['id']}").json()["result"]["entries"]}
    assert entries[small["arch"]]["status"] == "finished" and entries[big["arch"]]["status"] == "failed"
    assert "over the cap" in entries[big["arch"]]["error"]
