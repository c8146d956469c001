"""tests/warm_cli.py: a forked call behaves as `python -m MODULE` would (cwd, env, stdin, exit status, output),
and a call past its timeout is killed."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from warm_cli import run_initscore, run_module

PROBE = textwrap.dedent('''
    import os, sys
    print("cwd", os.getcwd())
    print("env", os.environ.get("PROBE_VALUE"), "OTHER" in os.environ)
    print("argv", sys.argv[1:])
    print("stdin", sys.stdin.read().strip())
    print("to stderr", file=sys.stderr)
    if sys.argv[1:] == ["raise"]:
        raise RuntimeError("boom")
    if sys.argv[1:] == ["sleep"]:
        import time
        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
''')


@pytest.fixture()
def probe_dir(tmp_path):
    (tmp_path / "probe_mod.py").write_text(PROBE)
    return tmp_path


def test_child_has_the_calls_cwd_env_stdin_and_exit_code(probe_dir):
    env = {"PATH": os.environ.get("PATH", ""), "PROBE_VALUE": "42"}
    os.environ["OTHER"] = "set in the test process only"
    try:
        warm = run_module("probe_mod", "3", cwd=probe_dir, env=env, input="hello")
    finally:
        del os.environ["OTHER"]
    cold = subprocess.run([sys.executable, "-m", "probe_mod", "3"], cwd=probe_dir, env=env, input="hello",
                          capture_output=True, text=True, timeout=60)
    assert warm.returncode == cold.returncode == 3
    assert warm.stdout == cold.stdout and warm.stderr == cold.stderr == "to stderr\n"
    assert f"cwd {probe_dir}" in warm.stdout and "env 42 False" in warm.stdout and "stdin hello" in warm.stdout


def test_uncaught_exception_is_exit_1_with_a_traceback(probe_dir):
    p = run_module("probe_mod", "raise", cwd=probe_dir)
    assert p.returncode == 1 and "Traceback" in p.stderr and "RuntimeError: boom" in p.stderr


def test_a_call_past_its_timeout_is_killed(probe_dir):
    with pytest.raises(subprocess.TimeoutExpired):
        run_module("probe_mod", "sleep", cwd=probe_dir, timeout=1)
    assert run_module("probe_mod", cwd=probe_dir).returncode == 0  # the warm process still serves


def test_initscore_exit_codes_and_one_line_errors():
    p = run_initscore("score", "--arch", "nope")
    assert p.returncode == 2 and p.stderr.startswith("error: unknown architecture 'nope'")
    assert len(p.stderr.strip().splitlines()) == 1
    assert run_initscore("--help").returncode == 0
