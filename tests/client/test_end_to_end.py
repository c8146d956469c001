"""End to end with real processes: uvicorn (the API) and `python -m worker.main` on a real Redis.

submit (client) -> progress -> result -> weights download -> load into a model gives
the same held-out GC as the job reported; a batch job; cancel; idempotency; errors.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, REPO, served


@pytest.fixture()
def stack(tmp_path: Path, redis_server, redis_conn):
    from service.deps import hash_key

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=redis_server.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"), INITSCORE_ALLOWED_ROOTS=str(tmp_path),
               INITSCORE_API_KEYS=f"{hash_key('k-alice')},{hash_key('k-bob')}", INITSCORE_HEARTBEAT_TTL="5")
    from client import Client

    with served(env) as url:
        c = Client(url, api_key="k-alice", retries=20, backoff=0.1)
        try:
            yield c, url, tmp_path
        finally:
            c.close()


def test_rectify_roundtrip_gc_matches(stack, redis_conn) -> None:
    import torch

    from client import Client, NotFoundError
    from initscore import models
    from initscore.contract import DataRef
    from initscore.data import load
    from initscore.scores import gradcosine

    c, url, tmp = stack
    req = {**MLP_RECTIFY, "options": {"iters": 40, "heldout_batches": 1}}
    job = c.submit(req, idempotency_key="rect-1")
    assert c.submit(req, idempotency_key="rect-1")["id"] == job["id"]
    seen_progress = []
    while True:
        cur = c.get(job, wait=0.2)
        if cur["status"] == "running" and cur["progress"]:
            seen_progress.append(cur["progress"]["fraction"])
        if cur["status"] in ("finished", "failed", "cancelled"):
            break
    assert cur["status"] == "finished", cur
    assert all(0 < f <= 1 for f in seen_progress)
    # the job can finish between two polls, so the progress the worker published is also read where
    # it lives: the RQ job's meta (attempt 1), which keeps the last report
    from rq.job import Job
    from rq.serializers import JSONSerializer

    meta = Job.fetch(f"{job['id']}-1", connection=redis_conn, serializer=JSONSerializer).get_meta()
    last = meta.get("progress")
    assert last is not None and last["done"] == last["total"] == 40 and last["fraction"] == 1.0
    res = cur["result"]
    assert len(res["history"]) == 40 and res["heldout_after"]["gc"] != res["heldout_before"]["gc"]
    path = c.download_weights(job, tmp / "w.safetensors")
    assert path.stat().st_size > 0
    # load into a fresh model (different init) and recompute the held-out GC exactly as the job did
    torch.manual_seed(12345)
    net = models.build(req["model"])
    c.load_rectified(job, net)
    prov = c.provenance(job)  # the weights file's own record of what made it
    assert prov.request_hash == cur["request_hash"] and prov.request["options"] == cur["request"]["options"]
    ref = DataRef.model_validate(req["data"])
    td = load(ref)
    _, held = td.split(ref.batch_size, ref.seed)
    o = cur["request"]["options"]
    gs = gradcosine(net, (held.x[: ref.batch_size], held.y[: ref.batch_size]), mode=o["mode"], sub_batches=o["sub_batches"],
                    overlap=o["overlap"])
    assert gs.gc == pytest.approx(res["heldout_after"]["gc"], rel=1e-5, abs=1e-7)
    assert gs.gn == pytest.approx(res["heldout_after"]["gn"], rel=1e-5)
    # another key cannot see it, nor its weights
    with Client(url, api_key="k-bob") as bob:
        with pytest.raises(NotFoundError):
            bob.get(job)
        with pytest.raises(NotFoundError):
            bob.download_weights(job, tmp / "stolen.safetensors")
    assert not (tmp / "stolen.safetensors").exists()


def test_batch_cancel_and_errors(stack) -> None:
    from client import AuthError, Client, ConflictError, ValidationFailed

    c, url, tmp = stack
    specs = [{"arch": "mlp", "args": {"in_features": 48, "hidden": h, "depth": d, "num_classes": 4}} for h in (4, 8) for d in (2, 3)]
    b = c.submit_batch(specs, MLP_SCORE["data"])
    long = c.submit_rectify(MLP_RECTIFY["model"], MLP_RECTIFY["data"], {"iters": 3000, "heldout_batches": 0})
    done = c.wait(b, timeout=60)
    g = c.group(done["group_id"])
    assert g["status"] == "finished" and [e["rank"] for e in g["entries"]] == [1, 2, 3, 4]
    while c.get(long)["status"] == "queued":
        time.sleep(0.05)
    c.cancel(long)
    ended = c.wait(long, timeout=60)
    assert ended["status"] == "cancelled" and any("cancelled while running" in e for e in ended["events"])
    with pytest.raises(ConflictError):
        c.cancel(long)
    with pytest.raises(ValidationFailed) as ei:
        c.submit_score({"arch": "nope"}, MLP_SCORE["data"])
    assert ei.value.status == 422 and ei.value.errors[0]["loc"] == "model" and "unknown architecture" in ei.value.detail
    with pytest.raises(AuthError):
        Client(url, api_key="wrong").list()
    assert {j["id"] for j in c.iter_jobs(kind="batch")} == {b["id"]}
