"""`python -m initscore ARGS` as a real process forked from a warm interpreter (the multiprocessing forkserver idea).

A fresh ``python -m initscore`` spends most of its time importing torch and the engine. ``run_initscore`` keeps
one helper process per test session (the *zygote*) that has imported them once and has run nothing; each call
forks it. The forked child is a real process of its own: it takes the call's working directory and environment,
its file descriptors 0/1/2 are a file (or /dev/null) and two temporary files, it runs ``initscore/__main__.py``
through ``runpy`` exactly as ``-m`` does, and its exit status is the one the test sees (``sys.exit`` codes,
1 with a traceback on an uncaught exception, minus the signal number when killed). The answer is a
``subprocess.CompletedProcess`` like ``subprocess.run(..., capture_output=True, text=True)`` gives.

What a warm process cannot show: anything about importing (whether a verb imports torch, how long start-up
takes, an import-time error) and settings read at import by modules the zygote preloaded. Tests of those run
``sys.executable`` themselves. ``INITSCORE_FAST_PATHS`` and ``OMP_NUM_THREADS`` are applied in the child again
(``initscore.fastpath`` reads the first at import; libgomp reads the second when torch is loaded).

``INITSCORE_TEST_COLD_CLI=1`` makes ``run_initscore`` start ``sys.executable -m initscore`` for every call instead,
to check that a test does not depend on the warm process.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]

# what the zygote imports before it forks anything: torch and every module a verb would import lazily
# (every module of the initscore package, the service client, and the parts of torch that torch.func loads lazily)
PRELOAD = ("torch", "torch.func", "torch._dynamo", "numpy", "safetensors.torch", "initscore.*", "client", "httpx")

_ZYGOTE = r'''
import importlib, importlib.util, json, os, runpy, signal, sys, traceback
requests, replies = os.fdopen(int(sys.argv[1]), "r"), os.fdopen(int(sys.argv[2]), "w", buffering=1)
import pkgutil
names = []
for name in json.loads(sys.argv[3]):
    if name.endswith(".*"):
        pkg = importlib.import_module(name[:-2])
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".") if not m.name.endswith("__main__")]
    else:
        names.append(name)
for name in names:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
# typer.rich_utils reads TERMINAL_WIDTH and the colour variables at import: the child imports it with its own env
sys.modules.pop("typer.rich_utils", None)
if "typer" in sys.modules and hasattr(sys.modules["typer"], "rich_utils"):
    delattr(sys.modules["typer"], "rich_utils")
replies.write("ready\n")


def child(req):
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    requests.close()
    replies.close()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    fds = [os.open(req["stdin"] or os.devnull, os.O_RDONLY),
           os.open(req["stdout"], os.O_WRONLY | os.O_TRUNC), os.open(req["stderr"], os.O_WRONLY | os.O_TRUNC)]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    if "initscore.fastpath" in sys.modules:
        fp = sys.modules["initscore.fastpath"]
        fp.set_enabled(os.environ.get("INITSCORE_FAST_PATHS", "1").strip().lower() not in ("0", "false", "no", "off"))
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        sys.modules["torch"].set_num_threads(int(threads))
    sys.path[0] = os.getcwd()  # what -m puts first
    spec = importlib.util.find_spec(req["module"])
    if spec is not None and spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(req["module"] + ".__main__")
    sys.argv = [spec.origin if spec is not None else req["module"], *req["args"]]
    code = 0
    try:
        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


for line in requests:
    req = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            child(req)
        finally:
            os._exit(70)
    replies.write(f"pid {pid}\n")
    _, status = os.waitpid(pid, 0)
    replies.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
'''


class _Zygote:
    def __init__(self) -> None:
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        # not the INITSCORE_* settings a test may have set when the first call starts it: each call brings its own
        path = os.pathsep.join([str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("INITSCORE_")}, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": path}
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(req_r), str(rep_w), json.dumps(PRELOAD)],
                                     cwd=REPO, env=env, pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL)
        os.close(req_r)
        os.close(rep_w)
        self._requests = os.fdopen(self._req_w, "w", buffering=1)
        self._replies = os.fdopen(self._rep_r, "r")
        self.lock = threading.Lock()
        if self._replies.readline().strip() != "ready":
            raise RuntimeError("the warm initscore process did not start")

    def run(self, module: str, args: Sequence[str], cwd: Path, env: Mapping[str, str], input_path: str | None,
            timeout: float, out: str, err: str) -> int:
        with self.lock:
            self._requests.write(json.dumps({"module": module, "args": list(args), "cwd": str(cwd), "env": dict(env),
                                             "stdin": input_path, "stdout": out, "stderr": err}) + "\n")
            line = self._replies.readline()
            if not line.startswith("pid "):
                raise RuntimeError(f"the warm initscore process answered {line!r}")
            pid = int(line.split()[1])
            killed = threading.Event()
            timer = threading.Timer(timeout, _kill_group, (pid, killed))
            timer.start()
            try:
                line = self._replies.readline()
            finally:
                timer.cancel()
            if not line.startswith("exit "):
                raise RuntimeError(f"the warm initscore process answered {line!r}")
            if killed.is_set():
                raise subprocess.TimeoutExpired([module, *args], timeout)
            return int(line.split()[1])

    def stop(self) -> None:
        self._requests.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._replies.close()


def _kill_group(pid: int, killed: threading.Event) -> None:
    killed.set()
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


_zygote: _Zygote | None = None


def zygote_pid() -> int | None:
    """The pid of the warm process when it runs (a child of this process for the whole session)."""
    return _zygote.proc.pid if _zygote is not None and _zygote.proc.poll() is None else None


def _get() -> _Zygote:
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = _Zygote()
        atexit.register(_zygote.stop)
    return _zygote


def run_initscore(*args: str, cwd: Path | str = REPO, env: Mapping[str, str] | None = None, input: str | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, "-m", "initscore", *args], cwd=cwd, env=env, input=input,
    capture_output=True, text=True, timeout=timeout)``, forked from the warm process (see the module docstring)."""
    return run_module("initscore", *args, cwd=cwd, env=env, input=input, timeout=timeout)


def run_module(module: str, *args: str, cwd: Path | str = REPO, env: Mapping[str, str] | None = None,
               input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` as ``run_initscore`` runs ``initscore``; a module in ``cwd`` is found (``-m`` puts
    the working directory first on sys.path)."""
    env = dict(os.environ if env is None else env)
    if os.environ.get("INITSCORE_TEST_COLD_CLI") == "1":
        return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, input=input,
                              capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="warm-cli-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for p in (out, err):
            Path(p).touch()
        input_path = None
        if input is not None:
            input_path = os.path.join(tmp, "stdin")
            Path(input_path).write_text(input)
        code = _get().run(module, args, Path(cwd).resolve(), env, input_path, timeout, out, err)
        return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code,
                                           Path(out).read_text(errors="replace"), Path(err).read_text(errors="replace"))
