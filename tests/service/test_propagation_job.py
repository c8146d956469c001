"""The service's propagation job takes the options the CLI offers (level, train_mode): real Redis, real RQ worker."""
from __future__ import annotations

import hashlib

import pytest

from svc_helpers import expect_problem, run_worker_burst

REQUEST = {
    "kind": "propagation",
    "model": {"arch": "resnet20", "args": {}},
    "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 8, "seed": 2},
    "options": {"seed": 4, "level": "block", "train_mode": False},
}


def test_block_level_eval_mode_job_equals_run_job(queued) -> None:
    settings, backend, tc = queued()
    r = tc.post("/v1/jobs", json=REQUEST)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job_id}").json()
    assert got["status"] == "finished", got
    res = got["result"]
    from initscore.jobs import run_job

    ref, _, png = run_job(REQUEST)
    want = ref.model_dump(mode="json")
    assert {k: v for k, v in res.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    assert [l["name"] for l in res["layers"]][:3] == ["conv1", "bn1", "layer1.0"]
    plot = tc.get(f"/v1/jobs/{job_id}/plot")
    assert plot.status_code == 200 and hashlib.sha256(plot.content).hexdigest() == res["plot_sha256"]
    assert png is not None and res["plot_sha256"] == hashlib.sha256(png).hexdigest()


@pytest.mark.parametrize("field,value", [("level", "layers"), ("train_mode", "sometimes")])
def test_bad_propagation_option_is_422_naming_the_field(queued, field, value) -> None:
    _, _, tc = queued()
    body = {**REQUEST, "options": {**REQUEST["options"], field: value}}
    problem = expect_problem(tc.post("/v1/jobs", json=body), 422)
    assert f"options.{field}" in str(problem), problem
