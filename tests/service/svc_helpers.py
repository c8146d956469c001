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
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

import warm_cli  # noqa: E402


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
        stop_processes(procs)


def stop_processes(procs: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM every process, wait up to ``grace`` s for each, SIGKILL what is left and wait for it too (a killed
    process not waited for can still hold a blocked Redis dequeue that takes the next test's job)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=grace)


def _socket_owners() -> dict[str, int]:
    """socket inode -> pid of a process holding it (every /proc/<pid>/fd that can be read)."""
    owners: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = os.listdir(proc / "fd")
        except OSError:
            continue
        for fd in fds:  # one by one: an fd may close meanwhile (the listing's own, in this process)
            try:
                target = os.readlink(proc / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(target[8:-1], int(proc.name))
    return owners


def redis_clients(r: Any) -> list[dict[str, Any]]:
    """Redis's CLIENT LIST for the server of connection ``r``, each entry with ``pid`` (the process that holds
    the client's end of the TCP connection, from /proc/net/tcp and /proc/<pid>/fd; None if not found) and
    ``cmdline`` of that process."""
    clients = r.client_list()  # first: every connection it lists is in /proc/net/tcp by then
    inodes: dict[int, str] = {}  # local port of a connection to the server -> socket inode
    server_port = int(r.connection_pool.connection_kwargs.get("port", 6379))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, inode = f[1], f[2], f[9]
            if int(remote.rsplit(":", 1)[1], 16) == server_port:
                inodes[int(local.rsplit(":", 1)[1], 16)] = inode
    owners = _socket_owners()
    out = []
    for c in clients:
        pid = owners.get(inodes.get(int(c["addr"].rsplit(":", 1)[1]), ""))
        cmdline = None
        if pid is not None:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        out.append({**c, "pid": pid, "cmdline": cmdline})
    return out


BLOCKING_COMMANDS = frozenset({"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
                               "subscribe", "psubscribe", "ssubscribe", "xread", "xreadgroup"})


def leftover_clients(r: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Connections to ``r``'s server that a finished test must not leave: any held by another process (a worker
    that is still alive or still exiting), and any of this process blocked in a dequeue or subscription. Waits
    up to ``timeout`` s for them to go (a killed process's sockets close when it has exited); returns those left."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        left = [c for c in redis_clients(r) if c["pid"] != me or c["cmd"].split("|")[0] in BLOCKING_COMMANDS]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def child_processes(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, cmdline) of every process whose parent is ``pid``; an exiting process's cmdline is empty."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if ppid == str(pid):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                out.append((int(proc.name), state, cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out


def leftover_children(exclude: set[int]) -> list[str]:
    """This process's child processes (alive, or exited but never waited for) other than ``exclude``, as
    "pid state cmdline"; a test must kill AND wait() for what it started."""
    return [f"{pid} {state} {cmd or '(exiting)'}" for pid, state, cmd in child_processes(os.getpid()) if pid not in exclude]


def describe_client(c: dict[str, Any]) -> str:
    return f"pid {c['pid']} ({c['cmdline'] or 'exiting or unknown'}) name={c['name'] or '-'} cmd={c['cmd']} age={c['age']}s"


LIVE_REDIS_PIDS: set[int] = set()  # redis-servers started by RedisServer in this process (the session ones too)


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
        LIVE_REDIS_PIDS.add(self.proc.pid)
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
        if self.proc:
            LIVE_REDIS_PIDS.discard(self.proc.pid)


def run_worker_burst(backend: Any, settings: Any, queues: tuple[str, ...] | None = None) -> None:
    """Run a real RQ SimpleWorker in burst mode (JSON serializer) in this process, with the production worker's
    command listener (worker.reconnect.QuickListener: its teardown does not wait out RQ's 60 s pub/sub read)."""
    import initscore.server.settings as sset
    from rq import SimpleWorker

    from worker.reconnect import QuickListener
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
        w = type("BurstWorker", (QuickListener, SimpleWorker), {})(qs, connection=backend.redis, serializer=JSONSerializer)
        w.work(burst=True, logging_level="WARNING", with_scheduler=False)
    finally:
        for k in ("INITSCORE_ARTIFACT_DIR", "INITSCORE_ALLOWED_ROOTS", "INITSCORE_HEARTBEAT_TTL"):
            os.environ.pop(k, None)
        sset.get_settings.cache_clear()
        jobs._ctx.clear()


def submit_and_run(tc: Any, backend: Any, settings: Any, req: dict, accepted: tuple[int, ...] = (200, 201, 202)) -> dict:
    """POST `req` to /v1/jobs (its status must be one of `accepted`), run a burst worker, return the submit answer."""
    r = tc.post("/v1/jobs", json=req)
    assert r.status_code in accepted, r.text
    run_worker_burst(backend, settings)
    return r.json()


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
    yield r
    children = leftover_children(LIVE_REDIS_PIDS | {warm_cli.zygote_pid()})
    left = leftover_clients(r)
    for c in left:  # so that the next test does not inherit them; this one fails below
        r.execute_command("CLIENT", "KILL", "ID", c["id"])
    r.flushdb()
    r.close()
    # a SIGKILLed worker that was not waited for can still hold its blocked dequeue when the next test
    # submits, and Redis hands that test's job to the dying connection
    assert not children, "the test left child processes behind (kill AND wait() for them): " + "; ".join(children)
    assert not left, "the test left Redis connections behind (a worker still alive or still exiting: SIGKILL it and " \
                     "wait() for it): " + "; ".join(describe_client(c) for c in left)


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

