"""Start-up of RQ workers: ``initscore worker`` / ``python -m worker.main``.

One worker process per GPU: with ``--gpus 0,1`` the parent (which never imports
torch, so CUDA is never initialized in a process that forks) spawns one child per
GPU with ``CUDA_VISIBLE_DEVICES=<gpu>`` and waits; each child runs one RQ
``SimpleWorker`` -- the job runs in the worker process itself, no fork per job --
with the JSON serializer. The child preloads the engine (torch) once so the first
job does not pay for the import. At start-up a worker sweeps for abandoned jobs.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Sequence

from initscore.server import defaults

log = logging.getLogger("initscore.worker")


class _Liveness:
    """Beat ``initscore:workers`` every window/4 seconds on a daemon thread, busy or idle (read by /readyz)."""

    def __init__(self, index: Any, name: str, window: float) -> None:
        self.index, self.name, self.interval = index, name, window / 4
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="initscore-liveness", daemon=True)

    def _beat(self) -> bool:
        try:
            self.index.worker_beat(self.name)
            return True
        except Exception:  # Redis away: the next beat may succeed
            return False

    def _run(self) -> None:
        ok = True
        while not self._stop.wait(self.interval):
            now_ok = self._beat()
            if now_ok != ok:
                log.warning("liveness beat %s", "restored" if now_ok else "failed (Redis unreachable); retrying")
            ok = now_ok

    def __enter__(self) -> "_Liveness":
        self._beat()
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        try:
            self.index.worker_gone(self.name)
        except Exception:
            pass


def run_worker(
    queues: Sequence[str] = defaults.QUEUES, *, burst: bool = False, name: str | None = None,
    redis_url: str | None = None, preload: bool = True, log_level: str = "INFO",
) -> int:
    """Run one worker in this process until stopped (or the queues are empty with `burst`).

    The RQ worker is a :class:`~worker.reconnect.ResilientWorker`. Should its loop still end
    for any reason other than a stop request (a signal) or the end of a burst -- Redis gone
    during start-up or teardown -- this waits for Redis with backoff and starts a fresh RQ
    worker (new name) instead of exiting.
    """
    from rq import Queue
    from rq.serializers import JSONSerializer

    from initscore.server.index import RedisJobIndex
    from initscore.server.queue import RQBackend, reap, redis_from_url
    from initscore.server.settings import get_settings
    from worker.reconnect import ResilientWorker, wait_for_redis

    settings = get_settings()
    url = redis_url or settings.redis_url
    if not url:
        raise SystemExit("error: set INITSCORE_REDIS_URL (or --redis-url) to run a queued worker")
    conn = redis_from_url(url)
    log.info("worker: artifacts in %s, data roots %s", settings.artifact_dir, list(settings.allowed_roots) or "(none)")
    if preload:
        import initscore.jobs  # noqa: F401
        import initscore.nio  # noqa: F401  (imports torch once, here, in the worker process)
        import initscore.scores  # noqa: F401
    qs = [Queue(q, connection=conn, serializer=JSONSerializer) for q in queues]
    base = name or f"{socket.gethostname()}.{os.getpid()}"
    index = RedisJobIndex(conn, record_ttl=settings.record_ttl)
    stopping = threading.Event()
    with _Liveness(index, base, settings.worker_beat_window):
        for generation in itertools.count():
            try:
                reap(RQBackend(settings, redis=conn), settings)
            except Exception as exc:  # never block start-up on the sweep
                log.warning("start-up sweep skipped: %s", exc)
            w = ResilientWorker(qs, connection=conn, serializer=JSONSerializer,
                                name=base if generation == 0 else f"{base}.{generation}")
            try:
                # no RQ scheduler: it runs in a forked child holding copies of this worker's sockets, which
                # outlived a SIGKILLed worker and let Redis hand its dead BLPOP the next job; transient
                # retries are immediate (initscore.server.defaults), so nothing needs scheduling
                ok = w.work(burst=burst, logging_level=log_level, with_scheduler=False)
            except Exception as exc:
                log.error("worker loop ended: %s: %s", type(exc).__name__, exc)
                ok = False
            if burst or w._stop_requested or w.stop_signalled or stopping.is_set():
                return 0 if ok or burst else 1
            # RQ's signal handlers belong to the worker that just ended: a stop now ends the wait
            signal.signal(signal.SIGTERM, lambda *_: stopping.set())
            signal.signal(signal.SIGINT, lambda *_: stopping.set())
            log.warning("worker loop ended without a stop request; waiting for Redis, then starting again")
            if not wait_for_redis(conn, stop=stopping.is_set):
                return 0
    return 1


def lower_priority(target: int) -> int:
    """Raise this process's CPU niceness to ``target`` (``os.nice``) unless it is already at least that; return it.

    Workers run batch jobs and the API answers polls: on a host where they share cores, a nice worker
    leaves the API the CPU when a burst of requests arrives. Children (``--gpus``) inherit the value.
    An unprivileged process can raise its niceness but not lower it, so a higher starting value is kept.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target > current:
        os.nice(target - current)
    return os.getpriority(os.PRIO_PROCESS, 0)


def spawn_per_gpu(gpus: Sequence[str], queues: Sequence[str], *, burst: bool = False) -> int:
    """One child worker per GPU (CUDA_VISIBLE_DEVICES); the parent only waits and forwards signals."""
    children: list[subprocess.Popen] = []
    for gpu in gpus:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu))
        cmd = [sys.executable, "-m", "worker.main", "--queues", ",".join(queues)]
        if burst:
            cmd.append("--burst")
        children.append(subprocess.Popen(cmd, env=env))
        log.info("started worker pid %d on GPU %s", children[-1].pid, gpu)

    def _forward(sig: int, _frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(sig)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    codes = [c.wait() for c in children]
    return max(codes, default=0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="worker.main", description="initscore RQ worker")
    ap.add_argument("--queues", default=",".join(defaults.QUEUES), help="comma-separated queue names")
    ap.add_argument("--gpus", default=None, help="comma-separated GPU ids: one worker process per GPU")
    ap.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    ap.add_argument("--name", default=None)
    ap.add_argument("--no-preload", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from pydantic import ValidationError

    from initscore.server.settings import get_settings

    try:
        nice = get_settings().worker_nice
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"error: INITSCORE_{str(err['loc'][0]).upper()}: {err['msg']}", file=sys.stderr)
        return 2
    log.info("worker: CPU niceness %d (INITSCORE_WORKER_NICE=%d)", lower_priority(nice), nice)
    queues = [q for q in a.queues.split(",") if q]
    if a.gpus:
        return spawn_per_gpu([g for g in a.gpus.split(",") if g], queues, burst=a.burst)
    return run_worker(queues, burst=a.burst, name=a.name, preload=not a.no_preload)


if __name__ == "__main__":
    sys.exit(main())
