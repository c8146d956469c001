"""The rules across a request's fields (``initscore.contract.request_problems``) belong to the request models: the
library's pydantic error, the CLI's one ``error:`` line and the API's 422 problem+json name the same field with the
same message (the real app on a real Redis, the CLI through its entry point in a subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from initscore.contract import JobRequest
from svc_helpers import expect_problem

ROOT = Path(__file__).resolve().parents[2]
MLP = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 1, "num_classes": 4}}
DATA = {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 4}
PAIRS = "GradCosine compares at least 2 samples; use batch_size >= 2"

# (request, the field it breaks, the message), and the score verb's flags for the same request where it has them
CASES = {
    "sub_batches over the batch": (
        {"kind": "score", "model": MLP, "data": {**DATA, "batch_size": 4}, "options": {"mode": "batch", "sub_batches": 8}},
        "options.sub_batches", "sub_batches 8 exceeds data.batch_size 4",
        ["--batch-size", "4", "--mode", "batch", "--sub-batches", "8"]),
    "one sample per batch": (
        {"kind": "score", "model": MLP, "data": {**DATA, "batch_size": 1}}, "data.batch_size", PAIRS,
        ["--batch-size", "1"]),
    "rectify on one sample": (
        {"kind": "rectify", "model": MLP, "data": {**DATA, "batch_size": 1}, "options": {"iters": 1}},
        "data.batch_size", PAIRS, None),
    "search on one sample": (
        {"kind": "search", "cells": ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"],
         "k": 1, "data": {"kind": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "batch_size": 1}},
        "data.batch_size", "the proxies compare samples (ZiCo splits the batch in two, naswot and jacob_cov compare "
                           "pairs); use batch_size >= 2", None),
    "top_k over the models": (
        {"kind": "batch", "models": [MLP, MLP], "data": {**DATA, "batch_size": 8}, "top_k": 3},
        "top_k", "top_k 3 is larger than the 2 models", None),
    "rank_by a proxy not asked for": (
        {"kind": "batch", "models": [MLP], "data": {**DATA, "batch_size": 8}, "rank_by": "synflow"},
        "rank_by", "rank_by 'synflow' must be one of ['ensemble', 'gradcosine', 'gradnorm'] (a proxy must also be "
                   "listed in options.proxies)", None),
}


def _library_error(body: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(JobRequest).validate_python(body)
    errs = info.value.errors()
    assert len(errs) == 1, errs
    loc = [str(p) for p in errs[0]["loc"]]
    assert loc[0] == body["kind"]  # the union's tag, then the field
    return ".".join(loc[1:]), errs[0]["msg"]


@pytest.mark.parametrize("case", list(CASES))
def test_library_and_api_name_the_same_field_with_the_same_message(case, queued) -> None:
    body, loc, msg, _ = CASES[case]
    assert _library_error(body) == (loc, msg)
    settings, backend, tc = queued()
    problem = expect_problem(tc.post("/v1/jobs", json=body), 422)
    assert problem["errors"] == [{"loc": loc, "msg": msg}], problem
    assert problem["detail"] == f"{loc}: {msg}"


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if v[3] is not None])
def test_cli_names_the_same_field_with_the_same_message(case) -> None:
    """The score verb builds the same request and rejects it before torch is imported: exit 2, one line."""
    body, loc, msg, flags = CASES[case]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "initscore", "score", "--arch", "mlp", "--args",
                        '{"in_features": 48, "hidden": 8, "depth": 1, "num_classes": 4}', "--data", "synthetic", *flags],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stderr.strip().splitlines() == [f"error: {loc}: {msg}"], p.stderr[-2000:]


def test_a_rule_is_listed_once_beside_the_other_problems(queued) -> None:
    """A rule broken together with a registry problem (the body parses: pydantic finds the rule, the parts are
    checked again) is listed once; broken beside a contract error elsewhere (pydantic stops before the request's
    own rules) it is found on the parts and still listed."""
    settings, backend, tc = queued()
    body = {"kind": "score", "model": {"arch": "no-such-net"}, "data": {**DATA, "batch_size": 4},
            "options": {"mode": "batch", "sub_batches": 8}}
    errors = expect_problem(tc.post("/v1/jobs", json=body), 422)["errors"]
    assert [e["loc"] for e in errors].count("options.sub_batches") == 1, errors
    assert any(e["loc"] == "model" and "no-such-net" in e["msg"] for e in errors), errors
    body = {**body, "model": {"arch": ""}}
    locs = [e["loc"] for e in expect_problem(tc.post("/v1/jobs", json=body), 422)["errors"]]
    assert "model.arch" in locs and locs.count("options.sub_batches") == 1, locs
