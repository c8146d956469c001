"""The job lifecycle's named transitions (initscore.server.lifecycle) on the real indexes and a real artifact store."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from initscore.server import lifecycle
from initscore.server.index import MemoryJobIndex, RedisJobIndex
from initscore.server.records import JobError, JobRecord, new_job_id
from initscore.server.storage import FileArtifactStore

ERR = JobError(type="model-error", title="The model failed on this data", detail="boom")


def _queued(index, max_attempts: int = 2) -> JobRecord:
    rec = JobRecord(id=new_job_id(), kind="score", owner="anonymous", request={}, request_hash="h" * 64,
                    seq=index.next_seq(), max_attempts=max_attempts)
    index.create(rec)
    return rec


def _durable(store: FileArtifactStore, job_id: str) -> dict | None:
    return store.get_ref("jobs", job_id)


def test_start_finish_then_nothing_leaves_a_final_state(tmp_path: Path) -> None:
    index, store = MemoryJobIndex(), FileArtifactStore(tmp_path / "a")
    rec = _queued(index)
    assert lifecycle.start(index, store, rec.id, 2, "w1") is None  # another attempt's worker loses
    assert _durable(store, rec.id) is None  # a lost transition writes nothing
    started = lifecycle.start(index, store, rec.id, 1, "w1")
    assert started is not None and started.status == "running" and started.worker == "w1"
    assert _durable(store, rec.id)["status"] == "running"
    done = lifecycle.finish(index, store, rec.id, 1, result_sha="r" * 64, weights_sha=None, plot_sha=None, seconds=0.3)
    assert done is not None and done.status == "finished" and done.result_sha == "r" * 64
    assert _durable(store, rec.id)["status"] == "finished"
    assert index.durations()["score"]["count"] == 1.0
    assert lifecycle.fail(index, store, rec.id, ERR, "late failure", attempt=1) is None
    assert lifecycle.cancel(index, store, rec.id, "late cancel") is None
    assert lifecycle.requeue(index, store, rec.id, 1, "late requeue") is None
    assert lifecycle.start(index, store, rec.id, 1, "w2") is None
    final = index.get(rec.id)
    assert final.status == "finished" and final.worker == "w1" and _durable(store, rec.id)["status"] == "finished"
    assert [e.split(" ", 1)[1] for e in final.events] == ["attempt 1 started on w1", "attempt 1 finished in 0.300 s"]


def test_finish_needs_running_and_fail_records_the_error(tmp_path: Path) -> None:
    index, store = MemoryJobIndex(), FileArtifactStore(tmp_path / "a")
    rec = _queued(index)
    assert lifecycle.finish(index, store, rec.id, 1, result_sha="r" * 64, weights_sha=None, plot_sha=None, seconds=1) is None
    failed = lifecycle.fail(index, store, rec.id, ERR, "attempt 1 failed: model-error", attempt=1, seconds=0.5)
    assert failed is not None and failed.status == "failed" and failed.error == ERR and failed.finished_at
    assert _durable(store, rec.id)["error"]["type"] == "model-error"
    assert index.durations()["score"]["count"] == 1.0


def test_requeue_obeys_its_guard_and_starts_the_next_attempt(tmp_path: Path) -> None:
    index, store = MemoryJobIndex(), FileArtifactStore(tmp_path / "a")
    rec = _queued(index)
    lifecycle.start(index, store, rec.id, 1, "w1")
    assert lifecycle.requeue(index, store, rec.id, 1, "died", leaves=("running",), guard=lambda r: False) is None
    assert lifecycle.requeue(index, store, rec.id, 1, "died", leaves=("queued",)) is None  # not in the state it leaves
    new = lifecycle.requeue(index, store, rec.id, 1, "died", leaves=("running",), guard=lambda r: True)
    assert new is not None and (new.status, new.attempt, new.worker, new.started_at) == ("queued", 2, None, None)
    assert new.events[-1].endswith("died; re-queued as attempt 2 of 2")
    assert _durable(store, rec.id)["attempt"] == 2
    assert lifecycle.start(index, store, rec.id, 1, "w1") is None  # the abandoned attempt cannot come back


def test_request_cancel_cancels_a_queued_job_and_marks_a_running_one(tmp_path: Path) -> None:
    index, store = MemoryJobIndex(), FileArtifactStore(tmp_path / "a")
    queued = _queued(index)
    done = lifecycle.request_cancel(index, store, queued.id)
    assert done.status == "cancelled" and done.cancel_requested and done.events[-1].endswith("cancelled while queued")
    assert _durable(store, queued.id)["status"] == "cancelled"
    running = _queued(index)
    lifecycle.start(index, store, running.id, 1, "w1")
    marked = lifecycle.request_cancel(index, store, running.id)
    assert marked.status == "running" and marked.cancel_requested and index.cancel_requested(running.id)
    assert marked.events[-1].endswith("cancel requested while running")
    ended = lifecycle.cancel(index, store, running.id, "cancelled while running", attempt=1)
    assert ended.status == "cancelled" and not index.cancel_requested(running.id)  # the flag goes with the final state


def test_persist_logs_a_store_failure_unless_strict(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "refs").write_text("not a folder")  # every ref write fails, even as root
    index, broken = MemoryJobIndex(), FileArtifactStore(tmp_path / "a")
    rec = _queued(index)
    with pytest.raises(OSError):
        lifecycle.persist(broken, rec, strict=True)
    started = lifecycle.start(index, broken, rec.id, 1, "w1")  # the worker's transitions log and go on
    assert started is not None and index.get(rec.id).status == "running"
    with pytest.raises(OSError):  # the API's cancel must not answer success without the durable copy
        lifecycle.cancel(index, broken, _queued(index).id, "cancelled while queued", strict=True)


def test_one_winner_when_a_late_worker_and_the_reaper_race_on_redis(redis_conn, tmp_path: Path) -> None:
    """finish (the worker) and requeue (the reaper) of the same running attempt, at once: exactly one wins."""
    index, store = RedisJobIndex(redis_conn), FileArtifactStore(tmp_path / "a")
    outcomes: list[str] = []
    for _ in range(20):
        rec = _queued(index)
        lifecycle.start(index, store, rec.id, 1, "w1")
        gate = threading.Barrier(2)
        won: dict[str, bool] = {}

        def finish() -> None:
            gate.wait()
            won["finish"] = lifecycle.finish(index, store, rec.id, 1, result_sha="r" * 64, weights_sha=None,
                                             plot_sha=None, seconds=0.1) is not None

        def requeue() -> None:
            gate.wait()
            won["requeue"] = lifecycle.requeue(index, store, rec.id, 1, "died", leaves=("running",)) is not None

        threads = [threading.Thread(target=finish), threading.Thread(target=requeue)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert won["finish"] != won["requeue"], won
        final = index.get(rec.id)
        assert final.status == ("finished" if won["finish"] else "queued")
        assert _durable(store, rec.id)["status"] == final.status  # the durable copy is the winner's
        outcomes.append(final.status)
    assert index.counts()["running"] == 0 and len(outcomes) == 20


def test_job_kinds_are_declared_once_and_each_has_a_queue_and_a_timeout() -> None:
    """JobKind lists the `kind` tags of the JobRequest union, and the server core configures every one."""
    from typing import get_args

    from initscore.contract import JOB_KINDS, JobRequest
    from initscore.server import defaults

    union = get_args(get_args(JobRequest)[0])
    tags = {m.model_fields["kind"].default for m in union}
    assert tags == set(JOB_KINDS)
    assert set(defaults.QUEUE_FOR_KIND) == set(JOB_KINDS) == set(defaults.TIMEOUT_FOR_KIND)
    assert set(defaults.QUEUE_FOR_KIND.values()) <= set(defaults.QUEUES)
