"""`initscore upload` with a path it cannot send: one `error:` line naming the path and exit 2, through the real
entry point (a real process forked from a warm interpreter, tests/warm_cli.py), before any connection is tried (the URL points at a closed port)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from warm_cli import run_initscore

ROOT = Path(__file__).resolve().parents[2]
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection attempt would fail differently


def _upload(path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    return run_initscore("upload", path, "--url", CLOSED, cwd=ROOT, env=env, timeout=120)


def _one_error_line(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr[-2000:]
    assert p.stdout == ""


def test_missing_file(tmp_path):
    missing = tmp_path / "missing.onnx"
    _one_error_line(_upload(str(missing)), f"{str(missing)!r} is not a file")


def test_a_directory(tmp_path):
    _one_error_line(_upload(str(tmp_path)), f"{str(tmp_path)!r} is not a file")


def test_an_unreadable_file(tmp_path):
    """A file whose read fails: mode 000 for a normal user; as root (who reads any mode) /proc/self/mem, a
    regular file whose read at offset 0 fails with EIO."""
    if os.geteuid() != 0:
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x08\x07")
        path.chmod(0)
    elif Path("/proc/self/mem").is_file():
        path = Path("/proc/self/mem")
    else:  # pragma: no cover
        pytest.skip("running as root without /proc: no file can be made unreadable")
    _one_error_line(_upload(str(path)), f"cannot read {str(path)!r}")
