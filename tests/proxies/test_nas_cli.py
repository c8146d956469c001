"""`initscore proxies` command: values on a tiny cell, one-line errors with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess

from warm_cli import run_initscore

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def run(*args: str) -> subprocess.CompletedProcess:
    return run_initscore("proxies", *args, cwd=os.getcwd(), env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_proxies_json_on_tiny_cell() -> None:
    r = run("--arch", "nb201", "--cell", RESNET, "--args", '{"C": 2, "N": 1}', "--batch-size", "4",
            "--names", "synflow,params,naswot", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["values"]) == {"synflow", "params", "naswot"} and not out["errors"]
    assert out["values"]["params"] > 0


def test_bad_cell_and_unknown_proxy_are_one_line_errors() -> None:
    r = run("--arch", "nb201", "--cell", "|nor_conv_3x3~0|")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "3 nodes" in r.stderr
    r = run("--arch", "nb201", "--cell", RESNET, "--names", "synflowz")
    assert r.returncode == 2 and "unknown proxy" in r.stderr
