"""The `redis_conn` fixture fails a test that leaves a Redis connection behind (a worker still alive or still
exiting): here a real process blocked in a dequeue is found, named by pid and command, and gone once reaped."""
from __future__ import annotations

import subprocess
import sys
import time

from svc_helpers import describe_client, leftover_clients

BLOCKED = "import redis, sys; redis.Redis(port=int(sys.argv[1])).blpop(['initscore-nothing'], 0)"


def test_a_blocked_dequeue_of_another_process_is_found_then_gone_once_reaped(redis_conn) -> None:
    port = int(redis_conn.connection_pool.connection_kwargs["port"])
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, str(port)])
    try:
        deadline = time.time() + 30
        while True:
            left = leftover_clients(redis_conn, timeout=0)
            if [c["cmd"] for c in left] == ["blpop"]:  # past redis-py's connection set-up commands
                break
            assert proc.poll() is None and time.time() < deadline, "the blocked client never connected"
            time.sleep(0.05)
        assert [(c["pid"], c["cmd"]) for c in left] == [(proc.pid, "blpop")], left
        assert BLOCKED[:20] in left[0]["cmdline"] and str(proc.pid) in describe_client(left[0])
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert leftover_clients(redis_conn, timeout=5) == []


def test_this_process_idle_connections_are_not_leftovers(redis_conn) -> None:
    redis_conn.set("k", "v")
    assert leftover_clients(redis_conn, timeout=0) == []
