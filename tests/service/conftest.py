"""Fixtures of the service tests: a REAL redis-server on a free port, the app on it, RQ workers.

No mocks: `redis_server` (svc_helpers.py) starts the `redis-server` binary
(``--save '' --appendonly no`` in a temporary directory) and kills it at teardown;
tests skip cleanly only if the binary is absent (``make setup`` installs it).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from svc_helpers import queued, redis_conn, redis_server, settings_factory  # noqa: E402,F401

os.environ.setdefault("OMP_NUM_THREADS", "1")
