"""The batch job through the real service (real Redis, real RQ worker): default rank_by is the recommended
`ensemble`, only the requested proxies come back, and a cell's score does not depend on its position (it equals
the library's score for the same spec, seed and batch)."""
from __future__ import annotations

from svc_helpers import submit_and_run
from svc_helpers import expect_problem as _problem

A = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
B = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
C = "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
DATA = {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 6, "seed": 2}


def spec(cell: str) -> dict:
    return {"arch": "nb201", "args": {"cell": cell, "C": 2, "N": 1}}


def _run(tc, backend, settings, req):
    g = tc.get(f"/v1/groups/{submit_and_run(tc, backend, settings, req)['group_id']}").json()
    assert g["status"] == "finished", g
    return g


def test_batch_ranks_by_ensemble_by_default_and_scores_per_spec(queued) -> None:
    import torch  # noqa: F401  (the library reference below)

    from initscore import data, proxies

    settings, backend, tc = queued()
    first = _run(tc, backend, settings, {"kind": "batch", "models": [spec(A), spec(B), spec(C)], "data": DATA})
    assert first["rank_by"] == "ensemble"
    ranked = [e for e in first["entries"] if e["rank"] is not None]
    assert [e["rank"] for e in ranked] == [1, 2, 3]
    assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
    # only what was asked for: the ensemble (its inputs are computed but not returned)
    assert all(set(e["result"]["proxies"]) == {"ensemble"} for e in first["entries"])
    assert all(e["score"] == e["result"]["proxies"]["ensemble"] for e in first["entries"])
    by_cell = {e["model"]["args"]["cell"]: e["score"] for e in first["entries"]}
    # the same cell in another position and company: the same score
    second = _run(tc, backend, settings, {"kind": "batch", "models": [spec(C), spec(A)], "data": DATA})
    again = {e["model"]["args"]["cell"]: e["score"] for e in second["entries"]}
    assert again[A] == by_cell[A] and again[C] == by_cell[C]
    # and the library gives it too (same spec, seed 0, same batch)
    td = data.load(DATA)
    x, y = td.batch(DATA["batch_size"], DATA["seed"])
    (row,) = proxies.score_architectures([spec(A)], (x, y), ["ensemble"])
    assert row.values["ensemble"] == by_cell[A]


def test_batch_rank_by_must_be_computed(queued) -> None:
    settings, backend, tc = queued()
    body = _problem(tc.post("/v1/jobs", json={"kind": "batch", "models": [spec(A)], "data": DATA, "rank_by": "snip"}), 422)
    assert body["errors"][0]["loc"] == "rank_by"


def test_batch_top_k_keeps_the_k_best_and_the_failures(queued) -> None:
    settings, backend, tc = queued()
    disconnected = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"
    models = [spec(A), spec(B), spec(C), spec(disconnected)]
    full = _run(tc, backend, settings, {"kind": "batch", "models": models, "data": DATA})
    scores = {e["index"]: e["score"] for e in full["entries"] if e["score"] is not None}
    top = _run(tc, backend, settings, {"kind": "batch", "models": models, "data": DATA, "top_k": 2})
    ranked = [e for e in top["entries"] if e["rank"] is not None]
    assert [e["index"] for e in ranked] == sorted(scores, key=lambda i: -scores[i])[:2]
    assert [e["score"] for e in ranked] == sorted(scores.values(), reverse=True)[:2]
    rest = [e for e in top["entries"] if e["rank"] is None]
    # the disconnected cell cannot be ranked: listed with its reason, not dropped silently
    assert all(e["status"] == "failed" and e["error"] for e in rest)
    assert {e["index"] for e in rest} == set(range(4)) - set(scores) == {3}
    assert "disconnected" in rest[0]["error"]
    body = _problem(tc.post("/v1/jobs", json={"kind": "batch", "models": models, "data": DATA, "top_k": 5}), 422)
    assert body["errors"][0]["loc"] == "top_k"
