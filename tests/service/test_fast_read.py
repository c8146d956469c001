"""``GET /v1/jobs/{id}`` without a query string is answered by ``JobReadFastPath`` (ahead of FastAPI's routing);
with ``?wait=0`` the FastAPI route answers the same read. Both must give the same status, headers that matter
and body in every case: own job queued and finished, another key's job, an admin key, no key, a wrong key,
malformed and unknown ids. Real Redis, the real app with its lifespan (the asyncio record reader), a real RQ
worker for the finished job.
"""
from __future__ import annotations

from svc_helpers import MLP_SCORE, expect_problem, run_worker_burst
from service.deps import hash_key

A, B, ADMIN = {"Authorization": "Bearer key-a"}, {"X-API-Key": "key-b"}, {"Authorization": "Bearer key-admin"}


def _same(tc, ctx, path: str, headers: dict[str, str], *, fast: bool = True):
    before = ctx.fast_reads
    quick = tc.get(path, headers=headers)
    assert ctx.fast_reads == before + (1 if fast else 0), f"{path}: answered by the {'route' if fast else 'fast path'}"
    full = tc.get(path, params={"wait": 0}, headers=headers)
    assert ctx.fast_reads == before + (1 if fast else 0), "?wait= must go to the FastAPI route"
    assert quick.status_code == full.status_code, (quick.text, full.text)
    for h in ("content-type", "content-length", "www-authenticate"):
        assert quick.headers.get(h) == full.headers.get(h), (h, quick.headers, full.headers)
    assert quick.json() == full.json()
    return quick


def test_fast_path_answers_like_the_route(queued) -> None:
    settings, backend, tc = queued(api_keys=[hash_key("key-a"), hash_key("key-b")], admin_keys=[hash_key("key-admin")])
    with tc:  # runs the lifespan: the asyncio record reader exists, so the fast path can answer
        ctx = tc.app.state.ctx
        assert ctx.records is not None
        job = tc.post("/v1/jobs", json=MLP_SCORE, headers=A).json()
        path = f"/v1/jobs/{job['id']}"

        queued_view = _same(tc, ctx, path, A).json()
        assert queued_view["status"] == "queued" and queued_view["id"] == job["id"]
        assert _same(tc, ctx, path, ADMIN).json() == queued_view
        assert expect_problem(_same(tc, ctx, path, B), 404)["type"].endswith(":job-not-found")
        assert expect_problem(_same(tc, ctx, path, {}), 401)["instance"] == path
        wrong = _same(tc, ctx, path, {"Authorization": "Bearer nope"})
        assert expect_problem(wrong, 401) and "invalid_token" in wrong.headers["www-authenticate"]
        for bad in ("j_" + "0" * 32, "nope", "j_" + "G" * 32):
            assert expect_problem(_same(tc, ctx, f"/v1/jobs/{bad}", A), 404)["type"].endswith(":job-not-found")

        run_worker_burst(backend, settings)
        done = _same(tc, ctx, path, A).json()
        assert done["status"] == "finished" and done["result"]["kind"] == "score" and done["progress"] == {"fraction": 1.0}

        n = ctx.fast_reads  # other methods and paths are the app's
        assert tc.head(path, headers=A).status_code == 405
        assert tc.get(f"{path}/weights", headers=A).status_code == 404
        assert tc.get("/v1/jobs", headers=A).json()["items"][0]["id"] == job["id"]
        assert ctx.fast_reads == n


def test_without_the_lifespan_the_route_answers(queued) -> None:
    _, _, tc = queued()  # no `with`: no asyncio record reader, so the fast path steps aside
    job = tc.post("/v1/jobs", json=MLP_SCORE).json()
    ctx = tc.app.state.ctx
    assert _same(tc, ctx, f"/v1/jobs/{job['id']}", {}, fast=False).json()["status"] == "queued"


def test_reads_that_arrive_together_share_one_round_trip(queued) -> None:
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError

    from service.deps import AsyncRecords
    from svc_helpers import free_port

    settings, backend, tc = queued()
    ids = [tc.post("/v1/jobs", json={**MLP_SCORE, "data": {**MLP_SCORE["data"], "seed": i}}).json()["id"] for i in range(20)]
    missing = "j_" + "0" * 32

    async def burst(url: str, keys: list[str]) -> tuple[list, int]:
        records = AsyncRecords(url, backend.index.record_key)
        try:
            got = await asyncio.gather(*(records.get(k) for k in keys), return_exceptions=True)
            try:
                one: object = await records.get(keys[0])  # a lone read after the burst: its own round trip
            except Exception as exc:
                one = exc
            return [*got, one], records.round_trips
        finally:
            await records.close()

    got, trips = asyncio.run(burst(settings.redis_url, [*ids, missing]))
    assert [r.id for r in got[:20]] == ids and got[20] is None and got[21].id == ids[0]
    assert all(r.owner == got[0].owner and r.status == "queued" for r in got[:20])
    assert trips == 2  # 21 concurrent reads in one MGET, then the lone one

    got, trips = asyncio.run(burst(f"redis://127.0.0.1:{free_port()}/0", ids[:5]))  # nothing listens there
    assert trips == 2 and all(isinstance(e, RedisConnectionError) for e in got)  # every waiter sees the error
