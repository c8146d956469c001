"""Faults the API must answer cleanly: an unwritable artifact store, Redis going away and coming back."""
from __future__ import annotations

from svc_helpers import MLP_RECTIFY, MLP_SCORE, RedisServer, run_worker_burst

PROBLEM = "application/problem+json"


def test_unwritable_store_fails_job_without_partial_files(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_RECTIFY).json()
    objects = settings.artifact_dir / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    objects.rmdir()
    objects.write_text("not a directory")  # every object write now fails (even as root)
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed" and got["error"]["type"] == "store-error", got
    assert "cannot write" in got["error"]["detail"]
    assert got["weights_sha256"] is None and tc.get(f"/v1/jobs/{job['id']}/weights").status_code == 409
    assert not [p for p in settings.artifact_dir.rglob(".tmp-*")]


def test_store_root_unusable_gives_503(queued, tmp_path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    settings, backend, tc = queued(artifact_dir=blocker / "artifacts")
    r = tc.post("/v1/jobs", json=MLP_SCORE)
    assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM) and "artifact store" in r.json()["detail"]
    assert backend.queue_depths()["initscore-score"] == 0


def test_redis_down_then_back(tmp_path, settings_factory) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from initscore.server.queue import RQBackend

    srv = RedisServer(tmp_path / "r2").start()
    try:
        settings = settings_factory(redis_url=srv.url)
        tc = TestClient(create_app(settings, RQBackend(settings)))
        assert tc.post("/v1/jobs", json=MLP_SCORE).status_code == 202
        srv.stop()
        for resp in (tc.get("/readyz"), tc.post("/v1/jobs", json=MLP_SCORE), tc.get("/v1/jobs")):
            assert resp.status_code == 503 and resp.headers["content-type"].startswith(PROBLEM), resp.text
            assert resp.headers.get("retry-after")
        assert tc.get("/healthz").status_code == 200
        srv.start()  # same port, empty data (no persistence in this test)
        assert tc.post("/v1/jobs", json=MLP_SCORE).status_code == 202  # recovered without an API restart
    finally:
        srv.stop()
