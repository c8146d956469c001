"""Surviving Redis outages in a worker: retry with backoff, an RQ worker that waits instead of quitting.

A Redis restart (or a network blip) shows up as ``redis.exceptions.ConnectionError``
(refused, reset, ``BusyLoadingError`` while the append-only file loads) or
``TimeoutError``. :func:`patiently` retries one call with exponential backoff
(0.25 s doubling to 5 s) for up to ``patience`` seconds, then re-raises.
:class:`ResilientWorker` is RQ's ``SimpleWorker`` whose own Redis bookkeeping
(heartbeats, state, registries, success and failure handling) goes through
:func:`patiently` without a deadline, so a busy worker finishes its job and
records it once Redis is back instead of printing "found an unhandled exception,
quitting..." and exiting. :class:`QuickListener` bounds how long a worker's teardown
waits for its command listener.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker

log = logging.getLogger("initscore.worker")

TRANSIENT: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
FIRST_DELAY, MAX_DELAY = 0.25, 5.0
LISTENER_POLL = 1.0  # seconds the worker's pub/sub command listener blocks in one read

T = TypeVar("T")


def patiently(fn: Callable[..., T], *args: Any, what: str, patience: float | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried on Redis connection/timeout errors with exponential backoff.

    Args:
        fn: the call that talks to Redis.
        what: a few words for the log line ("recording the result of job j_...").
        patience: seconds to keep trying before re-raising the last error; None = forever.
    """
    deadline = None if patience is None else time.monotonic() + patience
    delay, warned = FIRST_DELAY, False
    while True:
        try:
            result = fn(*args, **kwargs)
        except TRANSIENT as exc:
            if deadline is not None and time.monotonic() + delay > deadline:
                log.error("Redis still unreachable while %s after %.0f s; giving up: %s", what, patience, exc)
                raise
            if not warned:
                log.warning("Redis unreachable while %s (%s: %s); retrying with backoff", what, type(exc).__name__, exc)
                warned = True
            time.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
            continue
        if warned:
            log.warning("Redis is back; %s done", what)
        return result


def wait_for_redis(conn: Any, *, stop: Callable[[], bool] = lambda: False) -> bool:
    """Block until ``conn.ping()`` answers (backoff as above); False if `stop()` turned true first."""
    delay = FIRST_DELAY
    while not stop():
        try:
            conn.ping()
            return True
        except TRANSIENT:
            time.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
    return False


def _patient(name: str) -> Callable[..., Any]:
    parent = getattr(SimpleWorker, name)

    def method(self: SimpleWorker, *args: Any, **kwargs: Any) -> Any:
        return patiently(parent, self, *args, what=f"RQ {name.replace('_', ' ')}", **kwargs)

    method.__name__ = name
    method.__doc__ = f"RQ's ``{name}``, retried while Redis is unreachable."
    return method


class QuickListener:
    """RQ worker mixin: the pub/sub command listener (RQ's ``subscribe``) reads with a LISTENER_POLL timeout
    instead of RQ's 60 s. redis-py >= 8's ``PubSubWorkerThread.stop()`` joins the listener without a timeout,
    so with RQ's read a worker's teardown (burst end, warm shutdown) waited up to 60 s for that read to return."""

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=LISTENER_POLL, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)


class ResilientWorker(QuickListener, SimpleWorker):
    """``SimpleWorker`` (the job runs in this process) whose Redis bookkeeping waits out outages.

    Every method below is RQ's own, wrapped in :func:`patiently` without a deadline; RQ's
    dequeue loop already retries connection errors itself. A job finished during an outage
    is handed to ``handle_job_success`` once Redis answers again, so it is recorded once.
    """

    stop_signalled = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        """RQ's warm shutdown, remembered here: RQ's idle path raises StopRequested without setting a flag."""
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        """Best effort: a stop signalled while Redis is away must not raise inside the running job."""
        try:
            super().set_shutdown_requested_date()
        except TRANSIENT:
            pass

    heartbeat = _patient("heartbeat")
    set_state = _patient("set_state")
    check_for_suspension = _patient("check_for_suspension")
    run_maintenance_tasks = _patient("run_maintenance_tasks")
    prepare_execution = _patient("prepare_execution")
    prepare_job_execution = _patient("prepare_job_execution")
    handle_execution_ended = _patient("handle_execution_ended")
    handle_job_success = _patient("handle_job_success")
    handle_job_failure = _patient("handle_job_failure")
    handle_job_retry = _patient("handle_job_retry")
