"""Fixtures of the service tests: a REAL redis-server on a free port, the app on it, an RQ worker.

No mocks: `redis_server` starts the `redis-server` binary (``--save '' --appendonly no``
in a temporary directory) and kills it at teardown; tests skip cleanly only if the
binary is absent (``make setup`` installs it from Debian's packages).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from svc_helpers import REPO, RedisServer  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture()
def redis_conn(redis_server: RedisServer) -> Iterator[Any]:
    from redis import Redis

    r = Redis.from_url(redis_server.url)
    r.flushdb()
    yield r
    r.flushdb()
    r.close()


@pytest.fixture()
def settings_factory(tmp_path: Path, redis_server: RedisServer):
    from service.settings import Settings

    def make(**kw: Any) -> Settings:
        base = dict(redis_url=redis_server.url, artifact_dir=tmp_path / "artifacts", allowed_roots=[str(tmp_path / "data")],
                    heartbeat_ttl=2.0, reaper_interval=0.5)
        base.update(kw)
        (tmp_path / "data").mkdir(exist_ok=True)
        return Settings(**base)

    return make


@pytest.fixture()
def queued(settings_factory, redis_conn):
    """(settings, backend, TestClient) for the queued mode on the real Redis."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.queue import RQBackend

    def make(**kw: Any):
        settings = settings_factory(**kw)
        backend = RQBackend(settings, redis=redis_conn)
        app = create_app(settings, backend)
        return settings, backend, TestClient(app)

    return make


