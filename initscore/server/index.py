"""The job index: records, listing order, idempotency keys, heartbeats, cancel flags, duration counts.

Two implementations of one interface: :class:`RedisJobIndex` (queued mode; shared by
the API and every worker) and :class:`MemoryJobIndex` (inline mode, one process).
Record transitions are compare-and-set (`update` with a function), so a reaper that
re-queues an abandoned job and a late-finishing worker cannot both win.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterable, Protocol

from initscore.contract import FINAL_STATES, JOB_STATES
from initscore.server.records import JobRecord

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)
Updater = Callable[[JobRecord], "JobRecord | None"]


class JobIndex(Protocol):
    def ping(self) -> bool: ...
    def next_seq(self) -> int: ...
    def create(self, rec: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def update(self, job_id: str, fn: Updater) -> JobRecord | None: ...
    def page(self, owner: str | None, before_seq: int | None, count: int) -> list[tuple[int, str]]: ...
    def idem_reserve(self, owner: str, key_hash: str, job_id: str, request_hash: str, ttl: int) -> dict | None: ...
    def idem_release(self, owner: str, key_hash: str, job_id: str) -> None: ...
    def counts(self) -> dict[str, int]: ...
    def running_ids(self) -> list[str]: ...
    def heartbeat(self, job_id: str, attempt: int, ttl: float) -> None: ...
    def alive(self, job_id: str, attempt: int) -> bool: ...
    def request_cancel(self, job_id: str) -> None: ...
    def cancel_requested(self, job_id: str) -> bool: ...
    def observe_duration(self, kind: str, seconds: float) -> None: ...
    def durations(self) -> dict[str, dict[str, float]]: ...


def _bucket_field(seconds: float) -> str:
    for b in DURATION_BUCKETS:
        if seconds <= b:
            return repr(b)
    return "+Inf"


# ---------------------------------------------------------------- Redis
class RedisJobIndex:
    """Keys (prefix ``initscore:``): ``job:<id>`` JSON record; ``jobs`` and ``owner:<o>:jobs``
    sorted sets (score = submission sequence number); ``state:<s>`` sets; ``hb:<id>:<attempt>``
    heartbeat keys with a TTL; ``cancel:<id>`` flags; ``idem:<owner>:<key sha>``; ``duration:<kind>``
    histogram hashes; ``seq`` counter; ``workers`` sorted set (worker name -> time of its last beat)."""

    def __init__(self, redis: Any, *, prefix: str = "initscore:", record_ttl: int = 30 * 24 * 3600) -> None:
        self.r = redis
        self.p = prefix
        self.record_ttl = record_ttl

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    def ping(self) -> bool:
        return bool(self.r.ping())

    def record_key(self, job_id: str) -> str:
        """The Redis key of a job's record (read by the API's async path, service.deps.AsyncRecords)."""
        return self._k("job", job_id)

    def next_seq(self) -> int:
        return int(self.r.incr(self._k("seq")))

    def create(self, rec: JobRecord) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self._k("job", rec.id), rec.model_dump_json(), ex=self.record_ttl)
        pipe.zadd(self._k("jobs"), {rec.id: rec.seq})
        pipe.zadd(self._k("owner", rec.owner, "jobs"), {rec.id: rec.seq})
        pipe.sadd(self._k("state", rec.status), rec.id)
        if rec.status == "running":
            pipe.sadd(self._k("running"), rec.id)
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.r.get(self._k("job", job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def get_many(self, ids: Iterable[str]) -> list[JobRecord | None]:
        ids = list(ids)
        if not ids:
            return []
        raws = self.r.mget([self._k("job", i) for i in ids])
        return [JobRecord.model_validate_json(x) if x else None for x in raws]

    def update(self, job_id: str, fn: Updater) -> JobRecord | None:
        """Compare-and-set: read, apply `fn` (return None for 'no change'), write if unchanged meanwhile."""
        from redis.exceptions import WatchError

        key = self._k("job", job_id)
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if not raw:
                        return None
                    old = JobRecord.model_validate_json(raw)
                    new = fn(old.model_copy(deep=True))
                    if new is None:
                        pipe.unwatch()
                        return old
                    pipe.multi()
                    pipe.set(key, new.model_dump_json(), ex=self.record_ttl)
                    if new.status != old.status:
                        pipe.srem(self._k("state", old.status), job_id)
                        pipe.sadd(self._k("state", new.status), job_id)
                    if new.status == "running":
                        pipe.sadd(self._k("running"), job_id)
                    else:
                        pipe.srem(self._k("running"), job_id)
                    if new.status in FINAL_STATES:
                        pipe.delete(self._k("cancel", job_id))
                    pipe.execute()
                    return new
                except WatchError:
                    continue

    def page(self, owner: str | None, before_seq: int | None, count: int) -> list[tuple[int, str]]:
        key = self._k("jobs") if owner is None else self._k("owner", owner, "jobs")
        hi = f"({before_seq}" if before_seq is not None else "+inf"
        rows = self.r.zrevrangebyscore(key, hi, "-inf", start=0, num=count, withscores=True)
        return [(int(s), m.decode() if isinstance(m, bytes) else m) for m, s in rows]

    def idem_reserve(self, owner: str, key_hash: str, job_id: str, request_hash: str, ttl: int) -> dict | None:
        """Reserve an idempotency key for `job_id`; return the earlier reservation if the key was taken."""
        key = self._k("idem", owner, key_hash)
        doc = json.dumps({"job_id": job_id, "request_hash": request_hash})
        if self.r.set(key, doc, nx=True, ex=ttl):
            return None
        raw = self.r.get(key)
        return json.loads(raw) if raw else None

    _RELEASE = "local v = redis.call('GET', KEYS[1]) if v and cjson.decode(v)['job_id'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def idem_release(self, owner: str, key_hash: str, job_id: str) -> None:
        """Drop the reservation of an idempotency key if it still names `job_id` (its submit failed)."""
        self.r.eval(self._RELEASE, 1, self._k("idem", owner, key_hash), job_id)

    def counts(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for s in JOB_STATES:
            pipe.scard(self._k("state", s))
        return dict(zip(JOB_STATES, (int(x) for x in pipe.execute())))

    def running_ids(self) -> list[str]:
        return sorted(m.decode() if isinstance(m, bytes) else m for m in self.r.smembers(self._k("running")))

    def heartbeat(self, job_id: str, attempt: int, ttl: float) -> None:
        self.r.set(self._k("hb", job_id, str(attempt)), str(time.time()), px=max(1, int(ttl * 1000)))

    def alive(self, job_id: str, attempt: int) -> bool:
        return bool(self.r.exists(self._k("hb", job_id, str(attempt))))

    def request_cancel(self, job_id: str) -> None:
        self.r.set(self._k("cancel", job_id), "1", ex=self.record_ttl)

    # worker liveness (``workers`` sorted set: worker name -> Redis server time of its last beat)
    def _server_time(self) -> float:
        sec, usec = self.r.time()
        return float(sec) + float(usec) / 1e6

    def worker_beat(self, name: str) -> None:
        """Record that worker `name` is alive now (Redis server time, so API and worker clocks need not agree)."""
        self.r.zadd(self._k("workers"), {name: self._server_time()})

    def worker_gone(self, name: str) -> None:
        self.r.zrem(self._k("workers"), name)

    def live_workers(self, window: float) -> list[str]:
        """Workers that beat within the last `window` seconds (entries older than 100 windows are dropped)."""
        now = self._server_time()
        key = self._k("workers")
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", now - 100 * window)
        pipe.zrangebyscore(key, now - window, "+inf")
        _, names = pipe.execute()
        return sorted(m.decode() if isinstance(m, bytes) else m for m in names)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self._k("cancel", job_id)))

    def observe_duration(self, kind: str, seconds: float) -> None:
        key = self._k("duration", kind)
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(key, _bucket_field(seconds), 1)
        pipe.hincrbyfloat(key, "sum", float(seconds))
        pipe.hincrby(key, "count", 1)
        pipe.execute()

    def durations(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for key in self.r.scan_iter(match=self._k("duration", "*"), count=100):
            k = key.decode() if isinstance(key, bytes) else key
            kind = k.rsplit(":", 1)[-1]
            raw = self.r.hgetall(key)
            out[kind] = {(a.decode() if isinstance(a, bytes) else a): float(b) for a, b in raw.items()}
        return out


# ---------------------------------------------------------------- memory
class MemoryJobIndex:
    """The same interface in one process (inline mode): dicts under a lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._seq = 0
        self._idem: dict[tuple[str, str], tuple[float, dict]] = {}
        self._hb: dict[tuple[str, int], float] = {}
        self._cancel: set[str] = set()
        self._dur: dict[str, dict[str, float]] = {}
        self.changed = threading.Condition(self._lock)

    def ping(self) -> bool:
        return True

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def create(self, rec: JobRecord) -> None:
        with self._lock:
            self._jobs[rec.id] = rec.model_copy(deep=True)
            self.changed.notify_all()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            rec = self._jobs.get(job_id)
            return rec.model_copy(deep=True) if rec else None

    def get_many(self, ids: Iterable[str]) -> list[JobRecord | None]:
        return [self.get(i) for i in ids]

    def update(self, job_id: str, fn: Updater) -> JobRecord | None:
        with self._lock:
            old = self._jobs.get(job_id)
            if old is None:
                return None
            new = fn(old.model_copy(deep=True))
            if new is None:
                return old.model_copy(deep=True)
            self._jobs[job_id] = new.model_copy(deep=True)
            if new.status in FINAL_STATES:
                self._cancel.discard(job_id)
            self.changed.notify_all()
            return new

    def page(self, owner: str | None, before_seq: int | None, count: int) -> list[tuple[int, str]]:
        with self._lock:
            rows = sorted(
                ((r.seq, r.id) for r in self._jobs.values() if owner is None or r.owner == owner), reverse=True
            )
        if before_seq is not None:
            rows = [x for x in rows if x[0] < before_seq]
        return rows[:count]

    def idem_reserve(self, owner: str, key_hash: str, job_id: str, request_hash: str, ttl: int) -> dict | None:
        with self._lock:
            now = time.time()
            hit = self._idem.get((owner, key_hash))
            if hit and hit[0] > now:
                return hit[1]
            self._idem[(owner, key_hash)] = (now + ttl, {"job_id": job_id, "request_hash": request_hash})
            return None

    def idem_release(self, owner: str, key_hash: str, job_id: str) -> None:
        with self._lock:
            hit = self._idem.get((owner, key_hash))
            if hit and hit[1]["job_id"] == job_id:
                del self._idem[(owner, key_hash)]

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {s: 0 for s in JOB_STATES}
            for r in self._jobs.values():
                out[r.status] += 1
            return out

    def running_ids(self) -> list[str]:
        with self._lock:
            return sorted(r.id for r in self._jobs.values() if r.status == "running")

    def heartbeat(self, job_id: str, attempt: int, ttl: float) -> None:
        with self._lock:
            self._hb[(job_id, attempt)] = time.time() + ttl

    def alive(self, job_id: str, attempt: int) -> bool:
        with self._lock:
            return self._hb.get((job_id, attempt), 0.0) > time.time()

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancel

    def observe_duration(self, kind: str, seconds: float) -> None:
        with self._lock:
            d = self._dur.setdefault(kind, {})
            f = _bucket_field(seconds)
            d[f] = d.get(f, 0.0) + 1
            d["sum"] = d.get("sum", 0.0) + seconds
            d["count"] = d.get("count", 0.0) + 1

    def durations(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._dur.items()}
