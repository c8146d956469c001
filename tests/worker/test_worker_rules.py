"""Worker rules: a stale attempt never touches the record; failure records say what to fix."""
from __future__ import annotations

import logging

from svc_helpers import MLP_RECTIFY, MLP_SCORE, run_worker_burst


def test_stale_attempt_is_skipped(queued) -> None:
    settings, backend, tc = queued()
    job = tc.post("/v1/jobs", json=MLP_SCORE).json()
    rec = backend.index.get(job["id"])

    def _bump(r):
        r.attempt = 2
        return r

    backend.index.update(job["id"], _bump)  # as if the reaper had re-queued it; the attempt-1 RQ job is still queued
    run_worker_burst(backend, settings)
    after = backend.index.get(job["id"])
    assert after.status == "queued" and after.attempt == 2 and after.result_sha is None
    from rq.job import Job
    from rq.serializers import JSONSerializer

    rq_job = Job.fetch(f"{rec.id}-1", connection=backend.redis, serializer=JSONSerializer)
    assert rq_job.return_value() == {"job_id": job["id"], "status": "skipped"}
    backend.enqueue(after)
    run_worker_burst(backend, settings)
    assert backend.index.get(job["id"]).status == "finished"


def test_failure_classification_messages() -> None:
    from initscore.errors import NonFiniteError, ResourceError, SpecError
    from worker.jobs import classify_failure

    req = {"data": {"batch_size": 256, "shape": [3, 32, 32]}}
    e = classify_failure(NonFiniteError("gradient is NaN", tensor="layer3.0.conv1.weight"), req)
    assert e.type == "non-finite" and "layer3.0.conv1.weight" in e.detail
    e = classify_failure(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), req)
    assert e.type == "out-of-memory" and "batch_size (e.g. 128)" in e.detail
    e = classify_failure(ResourceError("out of memory even after chunking"), req)
    assert e.type == "out-of-memory"
    e = classify_failure(SpecError("resnet20: argument 'bn' must be true or false"), req)
    assert e.type == "spec-error" and e.title == "Invalid model spec"
    e = classify_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3072 and 48x8)"), req)
    assert e.type == "model-error" and "[3, 32, 32]" in e.detail
    e = classify_failure(KeyError("boom"), req)
    assert e.type == "internal-error" and "KeyError" in e.detail


def test_only_search_jobs_get_a_checkpoint(queued, monkeypatch, caplog) -> None:
    """Only a search can resume: the worker hands run_job a checkpoint for search jobs and None for the other
    kinds, and a score or rectify job never touches the checkpoint namespace of the store (here a file where its
    directory would be, so that any use of it fails and is logged)."""
    import initscore.jobs
    from worker.jobs import StoreCheckpoint

    settings, backend, tc = queued()
    seen: dict[str, object] = {}
    real = initscore.jobs.run_job

    def spy(request, **kw):  # the engine runs as always; the checkpoint the worker passed is noted
        seen[request["kind"]] = kw.get("checkpoint")
        return real(request, **kw)

    monkeypatch.setattr(initscore.jobs, "run_job", spy)
    trap = settings.artifact_dir / "refs" / "checkpoints"
    trap.parent.mkdir(parents=True, exist_ok=True)
    trap.write_text("not a directory: any checkpoint read, write or removal fails")
    ids = [tc.post("/v1/jobs", json=req).json()["id"] for req in (MLP_SCORE, MLP_RECTIFY)]
    with caplog.at_level(logging.WARNING):
        run_worker_burst(backend, settings)
    assert [backend.index.get(i).status for i in ids] == ["finished", "finished"]
    assert seen == {"score": None, "rectify": None}
    assert not [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]

    trap.unlink()
    cells = ["|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
             "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"]
    search = {"kind": "search", "cells": cells, "args": {"C": 2, "N": 1}, "k": 1, "proxy": "naswot",
              "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 4}}
    sid = tc.post("/v1/jobs", json=search).json()["id"]
    run_worker_burst(backend, settings)
    assert backend.index.get(sid).status == "finished"
    assert isinstance(seen["search"], StoreCheckpoint) and seen["search"].job_id == sid
