"""`initscore proxies` leaves the request's rules to the contract (initscore.contract.request_problems): a batch of
one sample is refused with the contract's message at its field, the one `error:` line the API's 422 and the other
verbs give, exit 2, before torch is imported (a cold interpreter: a warm one has torch loaded already)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from initscore.contract import DataRef, request_problems

ROOT = Path(__file__).resolve().parents[2]
CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
PAIRS = "data.batch_size: GradCosine compares at least 2 samples; use batch_size >= 2"
CODE = ("import sys\nfrom initscore.cli import main\nsys.argv = ['initscore', 'proxies'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('torch' in sys.modules, e.code)\n")


@pytest.mark.parametrize("data", [["--data", "synthetic"], ["--data", "cifar10", "--root", "{tmp}"]])
def test_one_sample_batch_is_the_contracts_error(tmp_path, data) -> None:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    args = ["--arch", "nb201", "--cell", CELL, "--args", '{"C": 2, "N": 1}', "--batch-size", "1",
            *(a.replace("{tmp}", str(tmp_path)) for a in data)]
    r = subprocess.run([sys.executable, "-c", CODE, *args], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.stdout.split() == ["False", "2"], (r.stdout, r.stderr[-2000:])  # exit 2, torch not imported
    assert r.stderr.splitlines() == [f"error: {PAIRS}"], r.stderr[-2000:]
    rules = request_problems("score", DataRef(kind="synthetic", batch_size=1), None)  # the message is the contract's
    assert [f"{'.'.join(loc)}: {msg}" for loc, msg, _ in rules] == [PAIRS]
