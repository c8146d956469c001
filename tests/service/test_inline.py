"""Inline mode (`initscore serve --inline`): no Redis, jobs on a thread pool, the same API."""
from __future__ import annotations

import time

from svc_helpers import MLP_RECTIFY, MLP_SCORE


def _wait(tc, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = tc.get(f"/v1/jobs/{job_id}?wait=2").json()
        if j["status"] in ("finished", "failed", "cancelled"):
            return j
    raise AssertionError("job did not finish")


def test_inline_score_rectify_and_cancel(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from initscore.server.settings import Settings

    settings = Settings(redis_url=None, artifact_dir=tmp_path / "a", allowed_roots=[str(tmp_path)])
    with TestClient(create_app(settings)) as tc:
        assert tc.get("/readyz").json()["mode"] == "inline"
        s = tc.post("/v1/jobs", json=MLP_SCORE).json()
        r = tc.post("/v1/jobs", json=MLP_RECTIFY).json()
        long = tc.post("/v1/jobs", json={**MLP_RECTIFY, "options": {"iters": 5000, "heldout_batches": 0}}).json()
        queued_then_cancelled = tc.post("/v1/jobs", json={**MLP_SCORE, "options": {"seed": 9}}).json()
        assert _wait(tc, s["id"])["result"]["kind"] == "score"
        rr = _wait(tc, r["id"])
        assert rr["status"] == "finished" and len(rr["result"]["history"]) == 5
        w = tc.get(f"/v1/jobs/{r['id']}/weights")
        assert w.status_code == 200 and w.headers["etag"] == f'"{rr["weights_sha256"]}"'
        while tc.get(f"/v1/jobs/{long['id']}").json()["status"] != "running":
            time.sleep(0.05)
        assert tc.get(f"/v1/jobs/{queued_then_cancelled['id']}").json()["status"] == "queued"  # one thread: still waiting
        assert tc.delete(f"/v1/jobs/{queued_then_cancelled['id']}").status_code == 200
        while (p := tc.get(f"/v1/jobs/{long['id']}").json()).get("progress") is None:
            time.sleep(0.05)
        assert 0 < p["progress"]["fraction"] < 1
        assert tc.delete(f"/v1/jobs/{long['id']}").status_code == 202
        assert _wait(tc, long["id"])["status"] == "cancelled"
        assert _wait(tc, queued_then_cancelled["id"])["status"] == "cancelled"
        # identical request answered from the stored result
        again = tc.post("/v1/jobs", json=MLP_SCORE).json()
        assert again["status"] == "finished" and again["reused"]
