"""Helpers shared by the service, worker and client tests (a real redis-server, a burst RQ worker, tiny requests)."""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(env: dict[str, str], *, api_cwd: Path = REPO, worker_cwd: Path | None = REPO,
           worker_args: tuple[str, ...] = (), timeout: float = 90.0) -> Iterator[str]:
    """The API under uvicorn and (unless ``worker_cwd`` is None) one ``python -m worker.main``, as real processes
    with ``env``; yields the API's URL once /readyz answers 200; both are stopped afterwards."""
    import httpx

    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(port),
                            "--log-level", "warning"], cwd=api_cwd, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    procs = [api]
    if worker_cwd is not None:
        procs.insert(0, subprocess.Popen([sys.executable, "-m", "worker.main", *worker_args], cwd=worker_cwd, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None, api.stderr.read().decode()[-2000:]
            assert all(p.poll() is None for p in procs) and time.time() < deadline, "stack did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not installed (make setup installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.workdir),
                "--appendonly", "yes" if self.appendonly else "no", "--protected-mode", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from redis import Redis

        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def run_worker_burst(backend: Any, settings: Any, queues: tuple[str, ...] | None = None) -> None:
    """Run a real RQ SimpleWorker in burst mode (JSON serializer) in this process."""
    import initscore.server.settings as sset
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from initscore.server import defaults
    from worker import jobs

    sset.get_settings.cache_clear()
    os.environ["INITSCORE_ARTIFACT_DIR"] = str(settings.artifact_dir)
    os.environ["INITSCORE_ALLOWED_ROOTS"] = ",".join(settings.allowed_roots)
    os.environ["INITSCORE_HEARTBEAT_TTL"] = str(settings.heartbeat_ttl)
    jobs._ctx.clear()
    try:
        qs = [backend.queues[q] for q in (queues or defaults.QUEUES)]
        w = SimpleWorker(qs, connection=backend.redis, serializer=JSONSerializer)
        w.work(burst=True, logging_level="WARNING", with_scheduler=False)
    finally:
        for k in ("INITSCORE_ARTIFACT_DIR", "INITSCORE_ALLOWED_ROOTS", "INITSCORE_HEARTBEAT_TTL"):
            os.environ.pop(k, None)
        sset.get_settings.cache_clear()
        jobs._ctx.clear()


MLP_SCORE = {
    "kind": "score",
    "model": {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 2, "num_classes": 4}},
    "data": {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8, "seed": 1},
}
MLP_RECTIFY = {
    "kind": "rectify",
    "model": {"arch": "mlp", "args": {"in_features": 48, "hidden": 16, "depth": 3, "num_classes": 4}},
    "data": {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4, "batch_size": 8, "seed": 1, "limit": 64},
    "options": {"iters": 5, "heldout_batches": 1},
}


# ---------------------------------------------------------------- fixtures (imported by the conftests)
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
    # a connection a previous test's worker left blocked in a dequeue would take this test's first job
    r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    yield r
    r.flushdb()
    r.close()


@pytest.fixture()
def settings_factory(tmp_path: Path, redis_server: RedisServer):
    from initscore.server.settings import Settings

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
    from initscore.server.queue import RQBackend

    def make(**kw: Any):
        settings = settings_factory(**kw)
        backend = RQBackend(settings, redis=redis_conn)
        app = create_app(settings, backend)
        return settings, backend, TestClient(app)

    return make




PROBLEM = "application/problem+json"


def expect_problem(resp: Any, status: int) -> dict:
    """Assert an RFC 9457 problem+json answer with `status` and return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == status and body["type"].startswith("urn:initscore:problem:") and body["title"] and body["detail"]
    return body


def with_field(path: str, value: Any, base: dict | None = None) -> dict:
    """A deep copy of ``base`` (default MLP_SCORE) with the dotted ``path`` (e.g. "data.batch_size") set."""
    req = copy.deepcopy(MLP_SCORE if base is None else base)
    cur = req
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return req

