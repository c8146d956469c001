"""The CLI hub: exit codes survive click's standalone_mode=False, errors are one line."""
from __future__ import annotations

import subprocess
import sys

PROG = r"""
import typer
from initscore import cli
from initscore.errors import SpecError

@cli.app.command("exit-with")
def _exit_with(code: int) -> None:
    raise typer.Exit(code)

@cli.app.command("bad-spec")
def _bad_spec() -> None:
    raise SpecError("unknown architecture 'nope'")

cli.main()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROG, *args], capture_output=True, text=True, timeout=120)


def test_typer_exit_code_is_kept() -> None:
    assert _run("exit-with", "3").returncode == 3
    assert _run("exit-with", "0").returncode == 0


def test_user_error_is_one_line_exit_2() -> None:
    out = _run("bad-spec")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown architecture 'nope'"
    assert "Traceback" not in out.stderr


def test_unknown_verb_is_usage_error() -> None:
    out = _run("no-such-verb")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
