"""A worker's teardown does not wait out its pub/sub command listener's read.

RQ's listener reads with a 60 s timeout and redis-py >= 8's ``PubSubWorkerThread.stop()`` joins it without one,
so a burst worker's end (and a warm shutdown) could hang for up to a minute. Real redis-server, real RQ worker.
"""
from __future__ import annotations

import time

from rq.serializers import JSONSerializer

from worker.reconnect import LISTENER_POLL, ResilientWorker


def test_command_listener_stops_within_its_poll(redis_conn) -> None:
    w = ResilientWorker([], connection=redis_conn, serializer=JSONSerializer, name="listener-stop")
    w.subscribe()
    deadline = time.monotonic() + 5
    while not redis_conn.pubsub_numsub(w.pubsub_channel_name)[0][1] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the listener has taken the subscribe reply and now blocks in its next read
    t0 = time.monotonic()
    w.pubsub_thread.stop()  # clears the running flag, then joins the listener (redis-py >= 8)
    w.pubsub_thread.join(timeout=70)
    took = time.monotonic() - t0
    w.pubsub.close()
    assert not w.pubsub_thread.is_alive()
    assert took < LISTENER_POLL + 2.0, f"the listener took {took:.1f} s to stop"


def test_burst_worker_on_an_empty_queue_returns_promptly(queued) -> None:
    from svc_helpers import run_worker_burst

    settings, backend, _ = queued()
    t0 = time.monotonic()
    for _ in range(3):
        run_worker_burst(backend, settings)
    assert time.monotonic() - t0 < 3 * (LISTENER_POLL + 3.0)
