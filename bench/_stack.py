"""A private service stack for the benchmarks: redis-server, the API, RQ workers, torn down as process groups.

``with Stack(workers=1) as s:`` starts, in a fresh temporary directory ``s.tmp``:

1. ``redis-server`` on a free local port (no RDB snapshots; ``appendonly=True`` for an append-only file in
   ``s.tmp``, so a restart on the same port and directory keeps the data), waited for with PING;
2. the API, ``uvicorn --factory service.app:create_app`` on another free port (what ``initscore serve`` runs),
   with ``--workers api_workers`` processes when that is more than 1, and ``api_args`` (e.g. ``--http h11``);
3. ``workers`` x ``python -m worker.main [worker_args]``;

then waits until ``GET {ready_path}`` answers 200 (``/readyz`` needs a worker's heartbeat; a stack without
workers waits for ``/healthz``). API and workers run from the code tree ``repo`` (default: this checkout; an
older tree, ``git archive <rev> | tar -x -C DIR``, is measured the same way): it is their working directory and
the first entry of ``PYTHONPATH``, before the entries of this process's ``PYTHONPATH`` (e.g. a directory of
optional wheels). Every process runs in its own session, so stopping it (SIGTERM, then SIGKILL after ``grace``
seconds) also stops what it forked (RQ's work horses, uvicorn's worker processes). The environment of API and
workers is this process's without any ``INITSCORE_*`` variable (a benchmark does not pick up a developer's
settings), plus the Redis URL, ``INITSCORE_ARTIFACT_DIR`` = ``s.tmp/artifacts``, ``INITSCORE_ALLOWED_ROOTS`` =
``s.tmp`` and ``extra_roots`` (dataset paths confined to the stack's directory and those), ``INITSCORE_WORKER_NICE``
= ``worker_nice`` when given (else the deployment default applies) and ``env``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Send ``sig`` to the process group of ``proc`` (its own session), wait ``grace`` s, then SIGKILL it."""
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # the leader has exited; what it forked may still be there
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Stack:
    """Redis + API + workers for one benchmark run (see the module docstring).

    Args:
        workers: how many ``worker.main`` processes (0: none; then ``ready_path`` defaults to /healthz).
        worker_args: extra arguments of every worker, e.g. ``["--queues", "initscore-rectify"]``.
        env: variables for API and workers, over the defaults (e.g. ``{"INITSCORE_API_KEYS": ...}``).
        appendonly: Redis with an append-only file in ``tmp`` (for restarts that keep the data).
        ready_path: the endpoint that must answer 200 before the stack counts as up.
        worker_logs: each worker's stdout+stderr to ``tmp/worker{i}.log`` (``log_paths``; appended to by the
            worker that replaces it, see ``restart_worker``), else discarded.
        api_stderr: False discards the API's stderr (its log level is "warning" either way); ``"file"`` writes
            it to ``tmp/api.log``.
        timeout: seconds to wait for Redis and for ``ready_path``.
        prefix: of the temporary directory's name.
        repo: the code tree API and workers run from.
        api_workers: uvicorn processes of the API (``--workers``; all its state is in Redis and the store).
        api_args: extra uvicorn arguments (``--http httptools``, ``--loop uvloop``).
        worker_nice: ``INITSCORE_WORKER_NICE`` of the workers (None: the settings' default).
        extra_roots: dataset roots allowed besides ``tmp``.
        keep_tmp: leave ``tmp`` (logs, artifacts) in place when the stack stops.
    """

    def __init__(self, *, workers: int = 1, worker_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 appendonly: bool = False, ready_path: str | None = None, worker_logs: bool = False,
                 api_stderr: bool | str = True, timeout: float = 120.0, prefix: str = "initscore-bench-",
                 repo: str | Path = REPO, api_workers: int = 1, api_args: Sequence[str] = (),
                 worker_nice: int | None = None, extra_roots: Sequence[str] = (), keep_tmp: bool = False) -> None:
        self.n_workers = workers
        self.worker_args = list(worker_args)
        self.appendonly = appendonly
        self.ready_path = ready_path or ("/readyz" if workers else "/healthz")
        self.worker_logs = worker_logs
        self.api_stderr = api_stderr
        self.timeout = timeout
        self.repo = Path(repo).resolve()
        self.api_workers = api_workers
        self.api_args = list(api_args)
        self.keep_tmp = keep_tmp
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.redis_port, self.api_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}
        path = [str(self.repo)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(self.repo)]
        self.env.update(PYTHONPATH=os.pathsep.join(path), INITSCORE_REDIS_URL=self.redis_url,
                        INITSCORE_ARTIFACT_DIR=str(self.tmp / "artifacts"),
                        INITSCORE_ALLOWED_ROOTS=",".join([str(self.tmp), *extra_roots]))
        if worker_nice is not None:
            self.env["INITSCORE_WORKER_NICE"] = str(worker_nice)
        self.env.update(env or {})
        self.redis: subprocess.Popen | None = None
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.log_paths: list[Path] = []
        self._files: list[IO[bytes]] = []

    # ---------------------------------------------------------------- redis
    def start_redis(self) -> subprocess.Popen:
        """Start redis-server on ``redis_port`` with ``tmp`` as its directory and wait for PING."""
        from redis import Redis

        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("error: redis-server is not installed")
        self.redis = subprocess.Popen(
            [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "yes" if self.appendonly else "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                if Redis(port=self.redis_port, socket_connect_timeout=0.2).ping():
                    return self.redis
            except Exception:  # not listening yet
                time.sleep(0.05)
            if self.redis.poll() is not None:
                break
        raise SystemExit(f"error: redis-server did not start on port {self.redis_port}")

    def shutdown_redis(self) -> None:
        """Redis SHUTDOWN (it writes its append-only file first) and wait for the process to exit."""
        from redis import Redis

        try:
            Redis(port=self.redis_port).shutdown()
        except Exception:  # the connection closes as the server exits
            pass
        if self.redis is not None:
            self.redis.wait(timeout=30)

    # --------------------------------------------------------------- processes
    def start_api(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1",
               "--port", str(self.api_port), "--log-level", "warning", *self.api_args]
        if self.api_workers > 1:
            cmd += ["--workers", str(self.api_workers)]
        err: Any = None
        if self.api_stderr == "file":
            err = (self.tmp / "api.log").open("ab")
            self._files.append(err)
        elif not self.api_stderr:
            err = subprocess.DEVNULL
        self.api = subprocess.Popen(cmd, cwd=self.repo, env=self.env, start_new_session=True, stderr=err)
        return self.api

    def start_worker(self, *args: str, index: int | None = None) -> subprocess.Popen:
        """Start a worker with ``worker_args`` + ``args``; ``index`` replaces ``workers[index]`` (else appended)."""
        i = len(self.workers) if index is None else index
        out: Any = subprocess.DEVNULL
        if self.worker_logs:
            path = self.tmp / f"worker{i}.log"
            if path not in self.log_paths:
                self.log_paths.append(path)
            out = path.open("ab")
            self._files.append(out)
        w = subprocess.Popen([sys.executable, "-m", "worker.main", *self.worker_args, *args], cwd=self.repo, env=self.env,
                             start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        if index is None:
            self.workers.append(w)
        else:
            self.workers[index] = w
        return w

    def restart_worker(self, index: int, *args: str, sig: int = signal.SIGKILL) -> subprocess.Popen:
        """Send ``sig`` to ``workers[index]``'s process group, wait for it, and start a replacement in its place."""
        old = self.workers[index]
        try:
            os.killpg(old.pid, sig)
        except ProcessLookupError:
            pass
        old.wait(timeout=30)
        return self.start_worker(*args, index=index)

    def kill_workers(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every worker's process group and wait for them."""
        for w in self.workers:
            try:
                os.killpg(w.pid, sig)
            except ProcessLookupError:
                pass
        for w in self.workers:
            w.wait(timeout=30)

    def wait_ready(self) -> None:
        """Poll ``ready_path`` until it answers 200; SystemExit if the API exits or ``timeout`` passes."""
        import httpx

        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                if httpx.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.api is not None and self.api.poll() is not None:
                raise SystemExit(f"error: the API exited with code {self.api.returncode}")
            time.sleep(0.2)
        raise SystemExit(f"error: {self.url}{self.ready_path} did not answer 200 within {self.timeout:.0f} s")

    # --------------------------------------------------------------- lifecycle
    def start(self) -> "Stack":
        self.start_redis()
        self.start_api()
        for _ in range(self.n_workers):
            self.start_worker()
        self.wait_ready()
        return self

    def stop(self, grace: float = 15.0) -> None:
        """Workers, then the API, then Redis (each as a process group), then the temporary directory."""
        for p in [*self.workers, self.api, self.redis]:
            if p is not None:
                _stop_group(p, grace=grace)
        for f in self._files:
            f.close()
        if not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Stack":
        try:
            return self.start()
        except BaseException:
            self.stop(grace=5.0)
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
