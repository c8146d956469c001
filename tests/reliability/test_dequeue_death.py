"""A worker killed between RQ's dequeue and the start of the job function leaves the job stuck (found by bench/soak.py).

In the soak run (docs/reliability.md) a worker was SIGKILLed right after RQ dequeued a
score job (RQ moved it to the StartedJobRegistry) but before ``worker.jobs`` marked
the record ``running`` and started its heartbeat. The record stays ``queued``; the
reaper only re-queues *running* records with an expired heartbeat and *queued* records
whose RQ job vanished, failed or stopped -- a queued record whose RQ job is
``started`` by a dead worker is never touched, so the job is lost until RQ's own
abandoned-job cleanup (job timeout + 60 s: 11 min for score, 6 h for rectify).
This test reproduces the state deterministically with a real RQ worker object that
dequeues and prepares the job and then never runs it (as if SIGKILLed).
"""
from __future__ import annotations

import time

import pytest

from svc_helpers import MLP_SCORE, run_worker_burst


def test_job_dequeued_by_a_worker_that_dies_before_running_is_not_lost(queued) -> None:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from initscore.server.queue import reap

    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    job = tc.post("/v1/jobs?reuse=false", json=MLP_SCORE).json()
    w = SimpleWorker([backend.queues["initscore-score"]], connection=backend.redis, serializer=JSONSerializer, name="doomed")
    w.register_birth()
    got = w.dequeue_job_and_maintain_ttl(timeout=1)
    assert got is not None
    w.prepare_job_execution(got[0])          # RQ: job -> StartedJobRegistry, status started
    w.register_death()                       # the worker is gone; the job function never ran
    assert tc.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    time.sleep(1.5)
    for _ in range(5):
        reap(backend, settings, now=time.time() + 60)
    run_worker_burst(backend, settings)
    final = tc.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "finished", final
    assert any("never started it" in e for e in map(str, final.get("events", []))), final.get("events")


def test_job_popped_by_a_worker_that_dies_before_rq_marks_it_started_is_not_lost(queued) -> None:
    """The soak's second lost job: the worker died between RQ's dequeue and prepare_job_execution,
    so the RQ job still says QUEUED but is on no queue. Two sweeps `heartbeat_ttl` apart re-queue it."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from initscore.server.queue import reap

    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    job = tc.post("/v1/jobs?reuse=false", json=MLP_SCORE).json()
    w = SimpleWorker([backend.queues["initscore-score"]], connection=backend.redis, serializer=JSONSerializer, name="doomed2")
    w.register_birth()
    got = w.dequeue_job_and_maintain_ttl(timeout=1)
    assert got is not None and got[0].get_status() == "queued"   # popped, never prepared
    w.register_death()
    t = time.time() + 60
    reap(backend, settings, now=t)                                 # first sighting: not yet
    assert tc.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    assert backend.redis.lpos(backend.queues["initscore-score"].key, f"{job['id']}-2") is None
    acts = reap(backend, settings, now=t + 2)                      # second sweep, grace passed
    assert (job["id"], "requeued") in acts
    run_worker_burst(backend, settings)
    final = tc.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "finished", final
    assert any("never started it" in str(e) for e in final.get("events", [])), final.get("events")


def test_live_queue_is_not_reaped(queued) -> None:
    """A job waiting on its queue (no worker yet) is never re-queued by the sweep."""
    from initscore.server.queue import reap

    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    job = tc.post("/v1/jobs?reuse=false", json=MLP_SCORE).json()
    t = time.time() + 60
    assert reap(backend, settings, now=t) == [] and reap(backend, settings, now=t + 5) == []
    assert tc.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
