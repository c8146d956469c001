"""The real FastAPI app on a real Redis with a real RQ SimpleWorker (burst, JSON serializer)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, PROBLEM, REPO, run_worker_burst
from svc_helpers import expect_problem as _problem



def test_service_and_client_import_without_torch() -> None:
    code = "import sys, service.app, initscore.server.queue, worker.jobs, client, initscore.jobs; assert 'torch' not in sys.modules, 'torch leaked'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_score_job_end_to_end_with_worker(queued) -> None:
    settings, backend, tc = queued()
    r = tc.post("/v1/jobs", json=MLP_SCORE)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["status"] == "queued"
    assert backend.queue_depths()["initscore-score"] == 1
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "finished", got
    res = got["result"]
    assert res["kind"] == "score" and res["arch"] == "mlp" and res["n"] == 8
    assert -1.0 <= res["gc"] <= 1.0 and res["gn"] > 0
    # the same numbers as the engine computed in-process
    from initscore.jobs import run_job

    ref, _, _ = run_job(MLP_SCORE)
    assert res["gc"] == pytest.approx(ref.gc, rel=1e-6) and res["gn"] == pytest.approx(ref.gn, rel=1e-6)
    # durable copy of the record, and the result survives a Redis flush
    backend.redis.flushdb()
    again = tc.get(f"/v1/jobs/{job['id']}").json()
    assert again["status"] == "finished" and again["result"]["gc"] == res["gc"]
    # weights only for rectify jobs
    _problem(tc.get(f"/v1/jobs/{job['id']}/weights"), 404)


def test_content_hash_reuse_and_idempotency(queued) -> None:
    settings, backend, tc = queued()
    first = tc.post("/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k1"}).json()
    replay = tc.post("/v1/jobs", json=MLP_SCORE, headers={"Idempotency-Key": "k1"})
    assert replay.status_code == 202 and replay.json()["id"] == first["id"] and replay.headers["idempotent-replayed"] == "true"
    other = copy.deepcopy(MLP_SCORE)
    other["data"]["seed"] = 2
    _problem(tc.post("/v1/jobs", json=other, headers={"Idempotency-Key": "k1"}), 422)
    assert backend.queue_depths()["initscore-score"] == 1
    run_worker_burst(backend, settings)
    done = tc.get(f"/v1/jobs/{first['id']}").json()
    reused = tc.post("/v1/jobs", json=MLP_SCORE).json()
    assert reused["id"] != first["id"] and reused["status"] == "finished" and reused["reused"] is True
    assert reused["result"] == done["result"]
    fresh = tc.post("/v1/jobs?reuse=false", json=MLP_SCORE).json()
    assert fresh["status"] == "queued" and fresh["reused"] is False


def test_cancel_queued_and_finished(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_SCORE).json()
    r = tc.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    run_worker_burst(backend, settings)  # the worker must not run it
    assert tc.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    _problem(tc.delete(f"/v1/jobs/{job['id']}"), 409)


def test_rectify_weights_download_and_etag(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_RECTIFY).json()
    assert backend.queue_depths()["initscore-rectify"] == 1
    _problem(tc.get(f"/v1/jobs/{job['id']}/weights"), 409)
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "finished", got
    w = tc.get(f"/v1/jobs/{job['id']}/weights")
    assert w.status_code == 200
    import hashlib

    sha = hashlib.sha256(w.content).hexdigest()
    assert w.headers["etag"] == f'"{sha}"' and got["result"]["weights_sha256"] == sha == got["weights_sha256"]
    assert tc.get(f"/v1/jobs/{job['id']}/weights", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    from initscore.weights_file import load

    state, prov = load(w.content)  # the one weights-file reader, as the CLI's files are read
    assert prov.arch == "mlp" and prov.request_hash == got["request_hash"]
    assert prov.request["kind"] == "rectify" and prov.summary["scales"] == got["result"]["scales"]
    assert set(state) == set(got["result"]["scales"]) | set(got["result"]["unscalable"])


def test_list_filters_and_cursor(queued) -> None:
    settings, backend, tc = queued()
    ids = []
    for seed in range(5):
        req = copy.deepcopy(MLP_SCORE)
        req["data"]["seed"] = seed
        ids.append(tc.post("/v1/jobs", json=req).json()["id"])
    tc.delete(f"/v1/jobs/{ids[0]}")
    page1 = tc.get("/v1/jobs?limit=2").json()
    assert [i["id"] for i in page1["items"]] == ids[::-1][:2] and page1["next_cursor"]
    page2 = tc.get(f"/v1/jobs?limit=2&cursor={page1['next_cursor']}").json()
    page3 = tc.get(f"/v1/jobs?limit=2&cursor={page2['next_cursor']}").json()
    assert [i["id"] for i in page2["items"] + page3["items"]] == ids[::-1][2:]
    assert page3["next_cursor"] is None
    cancelled = tc.get("/v1/jobs?status=cancelled").json()["items"]
    assert [i["id"] for i in cancelled] == [ids[0]]
    assert tc.get("/v1/jobs?kind=rectify").json()["items"] == []
    _problem(tc.get("/v1/jobs?status=bogus"), 422)
    _problem(tc.get("/v1/jobs?cursor=abc"), 422)


def test_batch_group(queued) -> None:
    settings, backend, tc = queued()
    specs = [{"arch": "mlp", "args": {"in_features": 48, "hidden": h, "depth": 2, "num_classes": 4}} for h in (4, 8, 16)]
    specs.append({"arch": "mlp", "args": {"in_features": 12, "hidden": 4, "depth": 2, "num_classes": 4}})  # wrong input size
    req = {"kind": "batch", "models": specs, "data": MLP_SCORE["data"]}
    job = tc.post("/v1/jobs", json=req).json()
    assert job["group_id"] and job["links"]["group"] == f"/v1/groups/{job['group_id']}"
    run_worker_burst(backend, settings)
    g = tc.get(f"/v1/groups/{job['group_id']}").json()
    assert g["status"] == "finished" and g["total"] == 4
    entries = g["entries"]
    ranked = [e for e in entries if e["rank"] is not None]
    assert [e["rank"] for e in ranked] == [1, 2, 3]
    assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
    failed = [e for e in entries if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["index"] == 3 and failed[0]["error"]
    _problem(tc.get("/v1/groups/g_nope"), 404)


def test_models_health_metrics(queued) -> None:
    settings, backend, tc = queued()
    names = [m["name"] for m in tc.get("/v1/models").json()["models"]]
    assert "mlp" in names
    assert tc.get("/healthz").json() == {"status": "ok"}
    _problem(tc.get("/readyz"), 503)  # no worker registered
    tc.post("/v1/jobs", json=MLP_SCORE)
    text = tc.get("/metrics").text
    assert 'initscore_jobs{state="queued"} 1.0' in text and 'initscore_queue_depth{queue="initscore-score"} 1.0' in text
    run_worker_burst(backend, settings)
    text = tc.get("/metrics").text
    assert 'initscore_jobs{state="finished"} 1.0' in text and 'initscore_job_duration_seconds_count{kind="score"} 1.0' in text
