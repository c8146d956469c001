"""Reuse the service test fixtures (a real redis-server on a free port, the app, workers)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from svc_helpers import queued, redis_conn, redis_server, settings_factory  # noqa: E402,F401

os.environ.setdefault("OMP_NUM_THREADS", "1")
