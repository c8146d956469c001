"""The search job through the real service (real Redis, real RQ workers, the API): the same top-k as the library,
progress while it runs, resumption after a SIGKILLed worker without rescoring the checkpointed cells, a corrupt
checkpoint ignored with a warning, and bad input refused with a 422 naming the field (nothing queued)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svc_helpers import REPO, expect_problem, run_worker_burst, served, stop_processes, submit_and_run

A = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
B = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
C = "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
D = "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
DISC = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"
ARGS = {"C": 2, "N": 1}
DATA = {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 6, "seed": 2}
SCORE_QUEUE = "initscore-score"


def _specs(cells: list[str]) -> list[dict]:
    return [{"arch": "nb201", "args": {"cell": c, **ARGS}} for c in cells]


def _library(specs: list[dict], k: int, proxy: str):
    from initscore import data, search

    batch = data.load(DATA).batch(DATA["batch_size"], DATA["seed"])
    return search.top_k(specs, batch, k, proxy)


def _same_top(result: dict, lib) -> None:
    assert [c["index"] for c in result["top"]] == [c.index for c in lib.top]
    assert [c["score"] for c in result["top"]] == pytest.approx([c.score for c in lib.top], rel=1e-5)


def test_search_job_returns_the_library_top_k(queued) -> None:
    settings, backend, tc = queued()
    cells = [A, DISC, B, C, D]
    req = {"kind": "search", "cells": cells, "args": ARGS, "data": DATA, "k": 3, "proxy": "naswot"}
    job_id = submit_and_run(tc, backend, settings, req, accepted=(202,))["id"]
    job = tc.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "finished", job
    res = job["result"]
    lib = _library(_specs(cells), 3, "naswot")
    _same_top(res, lib)
    assert res["kind"] == "search" and res["total"] == 5 and res["scored"] == 5 and res["resumed"] == 0
    assert res["failed"] == 1 and res["reasons"][0]["index"] == 1 and "disconnected" in res["reasons"][0]["reason"]
    assert all(set(c["values"]) == {"naswot"} and c["model"]["args"]["cell"] == cells[c["index"]] for c in res["top"])
    # the same cells as explicit model specs: the same answer
    r2 = tc.post("/v1/jobs", json={**{k: v for k, v in req.items() if k not in ("cells", "args")},
                                   "models": _specs(cells)})
    run_worker_burst(backend, settings)
    _same_top(tc.get(f"/v1/jobs/{r2.json()['id']}").json()["result"], lib)
    from service.ui.render import job_page  # the /ui page of the job lists the k best

    page = job_page(job)
    assert "the 3 best of 5 by <b>naswot</b>" in page and page.count(cells[res["top"][0]["index"]]) >= 2
    # a finished job leaves no checkpoint behind
    assert backend.store.get_ref("checkpoints", job_id) is None


def _start_worker(settings) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               INITSCORE_HEARTBEAT_TTL=str(settings.heartbeat_ttl), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "worker.main", "--queues", SCORE_QUEUE], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_worker_search_resumes_from_its_checkpoint(queued) -> None:
    from initscore import search
    from initscore.server.queue import reap

    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    n = 60  # checkpoints after 25 and 50 cells (search.CHECKPOINT_EVERY_CELLS)
    req = {"kind": "search", "sample": {"space": "nb201", "n": n, "sample_seed": 7}, "args": ARGS, "data": DATA,
           "k": 4, "proxy": "naswot"}
    job_id = tc.post("/v1/jobs", json=req).json()["id"]
    proc = _start_worker(settings)
    try:
        deadline, seen, doc = time.time() + 120, None, None
        while time.time() < deadline:
            seen = tc.get(f"/v1/jobs/{job_id}").json()
            doc = backend.store.get_ref("checkpoints", job_id)
            if doc is not None and seen["status"] == "running":
                break
            assert proc.poll() is None and seen["status"] in ("queued", "running"), seen
            time.sleep(0.05)
        else:
            pytest.fail(f"no checkpoint was written: {seen}")
        # progress is visible while it runs: cells done of the total and the best score so far
        p = seen["progress"]
        assert p["total"] == n and 0 < p["done"] < n and 0 < p["fraction"] < 1 and "best_score" in p["metrics"], p
        os.kill(proc.pid, signal.SIGKILL)  # the worst moment: in the middle of scoring, a checkpoint on disk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    doc = backend.store.get_ref("checkpoints", job_id)  # the last one written before the kill
    assert 0 < doc["done"] < n, doc["done"]
    assert tc.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    deadline = time.time() + 20
    while not [a for a in reap(backend, settings) if a == (job_id, "requeued")]:
        assert time.time() < deadline, "the sweep never re-queued the dead worker's job"
        time.sleep(0.2)
    run_worker_burst(backend, settings, (SCORE_QUEUE,))
    done = tc.get(f"/v1/jobs/{job_id}").json()
    assert done["status"] == "finished" and done["attempt"] == 2, done
    res = done["result"]
    # the cells before the checkpoint were taken from it, not scored again
    assert res["resumed"] == doc["done"] and res["scored"] == n - doc["done"] and res["total"] == n
    specs = search.nb201_sample(n, 7, **ARGS)
    _same_top(res, _library(specs, 4, "naswot"))
    assert backend.store.get_ref("checkpoints", job_id) is None


def _until_checkpointed(tc, backend, proc, job_id: str, timeout: float = 120) -> tuple[dict, dict]:
    """Poll until the running search job has a checkpoint on disk; (the job's view, the checkpoint)."""
    deadline, seen = time.time() + timeout, None
    while time.time() < deadline:
        seen = tc.get(f"/v1/jobs/{job_id}").json()
        doc = backend.store.get_ref("checkpoints", job_id)
        if doc is not None and seen["status"] == "running":
            return seen, doc
        assert proc.poll() is None and seen["status"] in ("queued", "running"), seen
        time.sleep(0.05)
    pytest.fail(f"no checkpoint was written: {seen}")


def _checkpoint_file(settings, job_id: str):
    return settings.artifact_dir / "refs" / "checkpoints" / f"{job_id}.json"


def test_cancelled_search_leaves_no_checkpoint(queued) -> None:
    """Cancelled mid-scan (a checkpoint on disk, progress > 0): the job has ended for good, its checkpoint goes."""
    settings, backend, tc = queued()
    n = 400  # the cancel lands at the next architecture, long before the end
    req = {"kind": "search", "sample": {"space": "nb201", "n": n, "sample_seed": 3}, "args": ARGS, "data": DATA,
           "k": 2, "proxy": "naswot"}
    job_id = tc.post("/v1/jobs", json=req).json()["id"]
    proc = _start_worker(settings)
    try:
        seen, doc = _until_checkpointed(tc, backend, proc, job_id)
        assert 0 < seen["progress"]["done"] < n and 0 < doc["done"] < n, (seen["progress"], doc["done"])
        assert tc.delete(f"/v1/jobs/{job_id}").status_code == 202  # running: its worker cancels it
        deadline = time.time() + 60
        while (job := tc.get(f"/v1/jobs/{job_id}").json())["status"] == "running":
            assert time.time() < deadline and proc.poll() is None, job
            time.sleep(0.05)
    finally:
        stop_processes([proc])
    assert job["status"] == "cancelled", job
    assert backend.store.get_ref("checkpoints", job_id) is None
    assert not _checkpoint_file(settings, job_id).exists()


def test_search_that_fails_for_good_leaves_no_checkpoint(queued) -> None:
    """Attempt 1 checkpoints and its worker is SIGKILLed: the reaper re-queues the job and the checkpoint stays
    for attempt 2. The data file is gone by then, so attempt 2 fails (a data error, not retried): the job has
    ended for good and its checkpoint goes with it."""
    import numpy as np

    from initscore.server.queue import reap

    settings, backend, tc = queued(heartbeat_ttl=1.0, max_attempts=2)
    data_file = Path(settings.allowed_roots[0]) / "train.npz"
    rng = np.random.default_rng(0)
    np.savez(data_file, x=rng.standard_normal((12, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 12))
    n = 400
    req = {"kind": "search", "sample": {"space": "nb201", "n": n, "sample_seed": 5}, "args": ARGS, "k": 2,
           "proxy": "naswot", "data": {"kind": "tensors", "root": str(data_file), "batch_size": 6, "seed": 1}}
    job_id = tc.post("/v1/jobs", json=req).json()["id"]
    proc = _start_worker(settings)
    try:
        _until_checkpointed(tc, backend, proc, job_id)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    deadline = time.time() + 20
    while not [a for a in reap(backend, settings) if a == (job_id, "requeued")]:
        assert time.time() < deadline, "the sweep never re-queued the dead worker's job"
        time.sleep(0.2)
    assert tc.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert backend.store.get_ref("checkpoints", job_id) is not None  # re-queued: kept for the next attempt
    data_file.unlink()
    run_worker_burst(backend, settings, (SCORE_QUEUE,))
    job = tc.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["attempt"] == 2 and job["error"]["type"] == "data-error", job
    assert backend.store.get_ref("checkpoints", job_id) is None
    assert not _checkpoint_file(settings, job_id).exists()


@pytest.mark.parametrize("content", [b'{"version": 1, "key": "abc", "do', b"\x00\xff garbage",
                                     b'{"version": 1, "key": "another search", "done": 2, "top": [], "failed": 0}'])
def test_corrupt_checkpoint_is_ignored_with_a_warning(queued, caplog, content) -> None:
    settings, backend, tc = queued()
    cells = [A, B, C]
    job_id = tc.post("/v1/jobs", json={"kind": "search", "cells": cells, "args": ARGS, "data": DATA, "k": 2,
                                       "proxy": "naswot"}).json()["id"]
    path = settings.artifact_dir / "refs" / "checkpoints" / f"{job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        run_worker_burst(backend, settings)
    job = tc.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "finished", job
    assert job["result"]["resumed"] == 0 and job["result"]["scored"] == 3
    _same_top(job["result"], _library(_specs(cells), 2, "naswot"))
    assert any("checkpoint" in r.getMessage() and "starting over" in r.getMessage() for r in caplog.records)


GOOD = {"kind": "search", "cells": [A, B, C], "args": ARGS, "data": DATA, "k": 2, "proxy": "naswot"}


@pytest.mark.parametrize("change, loc", [
    ({"proxy": "synflowz"}, "proxy"),
    ({"cells": [A, "|nor_conv_3x3~0|"]}, "cells[1]"),
    ({"cells": []}, "cells"),
    ({"k": 4}, "k"),
    ({"cells": None, "sample": {"space": "nb201", "n": 0}}, "sample.n"),
    ({"cells": None, "sample": {"space": "nb201", "n": 15626}}, "sample.n"),
    ({"cells": None, "sample": {"space": "darts", "n": 5}}, "sample.space"),
    ({"cells": None, "models": [{"arch": "nope"}]}, "models[0]"),
    ({"cells": None, "models": [{"arch": "onnx", "args": {"sha256": "a" * 64}}]}, "models[0]"),
    ({"data": {"kind": "cifar10", "root": "/nowhere/cifar10"}}, "data.root"),
    ({"args": {"C": 2, "N": 1, "num_classes": 5}}, "data.num_classes"),
    ({"cells": None}, "body"),
])
def test_bad_search_request_is_a_422_naming_the_field(queued, change, loc) -> None:
    settings, backend, tc = queued()
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    problem = expect_problem(tc.post("/v1/jobs", json=body), 422)
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert backend.queue_depths().get(SCORE_QUEUE, 0) == 0
    assert tc.get("/v1/jobs").json()["items"] == []


def test_client_submits_a_search_and_reads_the_top_k(tmp_path, redis_server, redis_conn) -> None:
    """Real processes: uvicorn and `python -m worker.main`; the client's submit_search and wait."""
    from client import Client, ValidationFailed

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=redis_server.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"), INITSCORE_ALLOWED_ROOTS=str(tmp_path))
    with served(env) as url, Client(url, retries=20, backoff=0.1) as client:
        job = client.wait(client.submit_search(DATA, cells=[A, B, C], args=ARGS, k=2, proxy="naswot"), timeout=120)
        assert job["status"] == "finished", job
        _same_top(job["result"], _library(_specs([A, B, C]), 2, "naswot"))
        with pytest.raises(ValidationFailed) as ei:
            client.submit_search(DATA, sample={"space": "nb201", "n": 3}, k=4)
        assert ei.value.errors[0]["loc"] == "k"
