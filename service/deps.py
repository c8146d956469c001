"""Request-scoped dependencies: the app context and the caller's identity (API keys).

Keys are never stored or logged: settings hold sha256 hex digests; a presented key
(``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) is hashed and compared
against EVERY configured digest with ``hmac.compare_digest`` (no early exit). The
owner of a job is the digest of the key that submitted it; admin keys see all jobs.
In open mode (no keys configured) everyone is the owner ``anonymous``.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import Request

from service.problems import ProblemError
from initscore.server.records import OPEN_OWNER, JobRecord
from initscore.server.settings import Settings


def hash_key(key: str) -> str:
    """The sha256 hex digest stored in INITSCORE_API_KEYS for `key`."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool

    def can_see(self, owner: str) -> bool:
        return self.admin or hmac.compare_digest(self.owner, owner)


class AsyncRecords:
    """Job records read with ``redis.asyncio`` on the server's event loop: the hot path of ``GET /v1/jobs/{id}``,
    with no thread-pool hop (each hop costs a thread wake-up and GIL hand-offs under load).

    Reads that arrive together are coalesced: :meth:`get` queues its key and the first caller of a loop iteration
    schedules one ``MGET`` for every key queued until it runs (keys queued while an ``MGET`` is in flight go in the
    next one). A burst of N polls then costs one Redis round trip and one connection instead of N of each, and a
    lone poll waits one loop iteration more. A Redis error reaches every caller of that batch.

    ``key(job_id)`` is the record's Redis key (``RedisJobIndex.record_key``). An asyncio client belongs to the
    loop it was made on, so the app makes one in its lifespan (uvicorn's loop) and closes it there; without a
    lifespan (a TestClient used without ``with``) there is none and the route reads in the thread pool.
    """

    def __init__(self, url: str, key: Callable[[str], str], max_batch: int = 512) -> None:
        from redis.asyncio import Redis

        self.key = key
        self.max_batch = max_batch
        self.redis = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._queued: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self.round_trips = 0  # MGETs sent (each answers one batch of gets)

    async def get(self, job_id: str) -> JobRecord | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes | None] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((self.key(job_id), fut))
        raw = await fut
        return JobRecord.model_validate_json(raw) if raw else None

    def _flush(self) -> None:
        batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch:]
        if self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        asyncio.get_running_loop().create_task(self._fetch(batch))

    async def _fetch(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        self.round_trips += 1
        try:
            values = await self.redis.mget([k for k, _ in batch])
        except BaseException as exc:  # every waiter of the batch sees the error (503 queue-unavailable, ...)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("record read cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), raw in zip(batch, values):
            if not fut.done():  # the request may have gone (client disconnected)
                fut.set_result(raw)

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass
class AppContext:
    settings: Settings
    backend: Any
    metrics: Any = None
    result_json: Callable[[str], Any] = field(default=lambda sha: None)
    records: AsyncRecords | None = None  # queued mode, while the lifespan runs: records read on the event loop
    fast_reads: int = 0  # GET /v1/jobs/{id} answered by routes.jobs.JobReadFastPath (not by the FastAPI route)

    @property
    def index(self) -> Any:
        return self.backend.index

    @property
    def store(self) -> Any:
        return self.backend.store


class ResultCache:
    """Parsed result JSON by sha256 (content-addressed, so immutable), LRU-bounded by entries AND by bytes.

    The byte budget counts the stored JSON text (parsed objects take roughly 3x that in
    memory). Bounding by entries alone let one API process hold 2,048 results of any
    size (the memory soak in bench/soak.py saw the API grow by ~3 MiB per 100 small
    jobs). A result larger than the whole budget is served but not kept.
    """

    def __init__(self, store: Any, size: int = 2048, max_bytes: int = 2 << 20) -> None:
        self.store, self.size, self.max_bytes = store, size, max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, sha: str) -> Any:
        with self._lock:
            hit = self._items.get(sha)
            if hit is not None:
                self._items.move_to_end(sha)
                return hit[0]
        raw = self.store.get(sha)
        value = json.loads(raw)
        n = len(raw)
        if n <= self.max_bytes and self.size > 0:
            with self._lock:
                if sha not in self._items:
                    self._items[sha] = (value, n)
                    self._bytes += n
                while self._items and (len(self._items) > self.size or self._bytes > self.max_bytes):
                    _, (_, m) = self._items.popitem(last=False)
                    self._bytes -= m
        return value

    def stats(self) -> tuple[int, int]:
        """(entries, bytes of JSON text) held now."""
        with self._lock:
            return len(self._items), self._bytes


def make_result_cache(store: Any, size: int = 2048, max_bytes: int = 2 << 20) -> ResultCache:
    """Results are content-addressed (immutable), so they can be cached by sha256 (bounded: see ResultCache)."""
    return ResultCache(store, size, max_bytes)


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _match(digest: str, allowed: list[str]) -> bool:
    hit = False
    for h in allowed:
        hit |= hmac.compare_digest(digest, h)
    return hit


def authenticate(settings: Settings, request: Request) -> Principal:
    if settings.open_mode:
        return Principal(owner=OPEN_OWNER, admin=False)
    key = _presented_key(request)
    if key is None:
        raise ProblemError(401, "Unauthorized", "this service needs an API key: send 'Authorization: Bearer <key>'",
                           slug="unauthorized", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_key(key)
    if _match(digest, settings.admin_keys):
        return Principal(owner=digest, admin=True)
    if _match(digest, settings.api_keys):
        return Principal(owner=digest, admin=False)
    raise ProblemError(401, "Unauthorized", "the API key is not valid for this service", slug="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def principal(request: Request) -> Principal:
    """FastAPI dependency: the authenticated caller (raises 401 problem+json). ``async`` because it does no I/O:
    FastAPI would run a plain ``def`` dependency in the thread pool."""
    return authenticate(get_ctx(request).settings, request)


async def admin_principal(request: Request) -> Principal:
    """FastAPI dependency: an admin key (401 without a valid key, 403 for a tenant key); open mode lets anyone in."""
    settings = get_ctx(request).settings
    who = authenticate(settings, request)
    if not settings.open_mode and not who.admin:
        raise ProblemError(403, "Forbidden", "this route shows every tenant's figures; it needs an admin key (INITSCORE_ADMIN_KEYS)",
                           slug="forbidden")
    return who
