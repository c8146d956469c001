"""A body that breaks the contract AND the deployment's limits gets one 422 listing both (docs/service.md:
"listing every problem at once"), through the real app on a real Redis."""
from __future__ import annotations

from svc_helpers import expect_problem


def _locs(body: dict) -> dict[str, str]:
    return {e["loc"]: e["msg"] for e in body["errors"]}


def test_contract_error_and_deployment_problems_listed_together(queued, tmp_path) -> None:
    settings, backend, tc = queued(max_batch_size=32)
    req = {"kind": "score",
           "model": {"arch": "no-such-net", "args": {}},
           "data": {"kind": "imagefolder", "root": str(tmp_path.parent), "batch_size": 64},
           "options": {"sub_batches": 1, "proxies": ["no-such-proxy"]}}
    body = expect_problem(tc.post("/v1/jobs", json=req), 422)
    locs = _locs(body)
    assert "options.sub_batches" in locs, body                            # the contract (pydantic)
    assert "no-such-net" in locs["model"], body                           # the registry
    assert "outside the allowed" in locs["data.root"], body               # the data roots
    assert "over the limit of 32" in locs["data.batch_size"], body        # a deployment limit
    assert list(locs)[0] == "options.sub_batches", "contract errors come first"
    assert "options.sub_batches" in body["detail"] and "no-such-net" in body["detail"], body
    assert not any(k.startswith("options.proxies") for k in locs), "a part that breaks the contract is not checked further"


def test_batch_and_rectify_parts_are_checked_alone(queued) -> None:
    settings, backend, tc = queued(max_iters=10)
    mlp = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 1, "num_classes": 4}}
    data = {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8}
    batch = {"kind": "batch", "models": [mlp, {"arch": "nope"}, {"arch": ""}], "data": data, "top_k": 0,
             "rank_by": "zzz"}
    locs = _locs(expect_problem(tc.post("/v1/jobs", json=batch), 422))
    assert "top_k" in locs and "models[2].arch" in locs, locs            # contract
    assert "nope" in locs["models[1]"] and "zzz" in locs["rank_by"], locs  # deployment, on the parts that parse
    rectify = {"kind": "rectify", "model": {"arch": "nope"}, "data": {**data, "seed": -1}, "options": {"iters": 50}}
    locs = _locs(expect_problem(tc.post("/v1/jobs", json=rectify), 422))
    assert "data.seed" in locs and "nope" in locs["model"] and "over the limit of 10" in locs["options.iters"], locs


def test_contract_error_alone_and_malformed_json_unchanged(queued) -> None:
    settings, backend, tc = queued()
    ok_model = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 1, "num_classes": 4}}
    req = {"kind": "score", "model": ok_model, "data": {"kind": "synthetic", "shape": [3, 4, 4], "batch_size": 0}}
    body = expect_problem(tc.post("/v1/jobs", json=req), 422)
    assert [e["loc"] for e in body["errors"]] == ["data.batch_size"], body
    bad = tc.post("/v1/jobs", content=b'{"kind": ', headers={"content-type": "application/json"})
    assert expect_problem(bad, 400)["type"].endswith("malformed-json")
