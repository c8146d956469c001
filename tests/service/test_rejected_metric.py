"""``initscore_requests_rejected_total{status}`` counts every 4xx answer of the API once, whichever part answered it:
FastAPI's request validation, a route's ProblemError, the dependencies' 401/403, the body guard's 413/415 and the
JobReadFastPath ahead of routing. /metrics shows the whole deployment's figures, so it stays an admin route (a
tenant key gets 403). Real Redis, the real app with its lifespan (so the fast path answers)."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from svc_helpers import MLP_SCORE, expect_problem, with_field
from service.deps import hash_key

A, ADMIN = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-admin"}


def _rejected(tc) -> dict[str, float]:
    r = tc.get("/metrics", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {s.labels["status"]: s.value for f in text_string_to_metric_families(r.text)
            if f.name == "initscore_requests_rejected" for s in f.samples if s.name.endswith("_total")}


def test_every_4xx_is_counted_by_status(queued) -> None:
    settings, backend, tc = queued(api_keys=[hash_key("key-a")], admin_keys=[hash_key("key-admin")], max_body_bytes=4096)
    with tc:  # the lifespan: the asyncio record reader exists, so JobReadFastPath answers plain polls
        ctx = tc.app.state.ctx
        job = tc.post("/v1/jobs", json=MLP_SCORE, headers=A).json()
        before = _rejected(tc)

        fast = ctx.fast_reads
        expect_problem(tc.get(f"/v1/jobs/j_{'0' * 32}", headers=A), 404)  # the fast path: unknown job
        expect_problem(tc.get(f"/v1/jobs/{job['id']}"), 401)  # the fast path: no key
        assert ctx.fast_reads == fast + 2
        expect_problem(tc.post("/v1/jobs", json=with_field("data.batch_size", 1), headers=A), 422)  # request rules
        expect_problem(tc.get(f"/v1/jobs/{job['id']}", params={"wait": -1}, headers=A), 422)  # a query parameter
        expect_problem(tc.get("/metrics", headers=A), 403)  # a tenant key sees no deployment figures
        expect_problem(tc.post("/v1/jobs", content=b"{}", headers={**A, "Content-Type": "text/plain"}), 415)
        expect_problem(tc.post("/v1/jobs", content=b" " * 5000, headers={**A, "Content-Type": "application/json"}), 413)
        assert tc.delete(f"/v1/jobs/{job['id']}", headers=A).status_code == 200  # cancelled while queued
        expect_problem(tc.delete(f"/v1/jobs/{job['id']}", headers=A), 409)  # already final
        expect_problem(tc.get("/v1/no-such-route", headers=A), 404)
        assert tc.get(f"/v1/jobs/{job['id']}", headers=A).status_code == 200  # not counted

        after = _rejected(tc)
    delta = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in set(after) | set(before)}
    assert {s: d for s, d in delta.items() if d} == {"401": 1, "403": 1, "404": 2, "409": 1, "413": 1, "415": 1,
                                                     "422": 2}, (before, after)
