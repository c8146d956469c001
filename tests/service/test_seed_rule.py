"""One seeding rule on every scoring path: the weights of a spec come from spec_seed(spec, seed), so the same spec
and seed give the same GradCosine and proxies in the library, `initscore score`, `initscore search`, a score job, a
batch job and a search job (real Redis, real RQ worker, the CLI as a real process)."""
from __future__ import annotations

import pytest

import json
import os

from svc_helpers import REPO, submit_and_run
from warm_cli import run_initscore

CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
OTHER = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
ARGS = {"cell": CELL, "C": 2, "N": 1}
SPEC = {"arch": "nb201", "args": ARGS}
# the data reference `initscore score --data synthetic --batch-size 6 --seed 2` builds for this spec
DATA = {"kind": "synthetic", "split": "train", "batch_size": 6, "seed": 2, "shape": [3, 32, 32], "num_classes": 10}
PROXIES = ["synflow", "naswot"]
SEED = 3


def _library(seed: int) -> tuple[float, float, dict[str, float]]:
    import torch

    from initscore import data, models, proxies
    from initscore.proxies.batch import spec_seed
    from initscore.scores import gradcosine

    batch = data.load(DATA).batch(DATA["batch_size"], DATA["seed"])
    (row,) = proxies.score_architectures([SPEC], batch, PROXIES, seed=seed)
    torch.manual_seed(spec_seed(SPEC, seed))
    gs = gradcosine(models.build(SPEC), batch)
    return float(gs.gc), float(gs.gn), dict(row.values)


def _cli(seed: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = run_initscore("score", "--arch", "nb201", "--args", json.dumps(ARGS), "--data", "synthetic", "--batch-size", "6",
                      "--seed", "2", "--init-seed", str(seed), "-o", f"proxies={json.dumps(PROXIES)}", "--json",
                      cwd=REPO, env=env, timeout=180)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _finished(tc, backend, settings, req: dict) -> dict:
    job = tc.get(f"/v1/jobs/{submit_and_run(tc, backend, settings, req)['id']}").json()
    assert job["status"] == "finished", job
    return job


# Same weights on every path; the float32 sums may still be reduced in another order (another process, another
# thread count), so values agree to rel 1e-5 -- a different seed moves them by percents (checked below).
def _same(got, want) -> bool:
    return got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_same_spec_and_seed_same_score_on_every_path(queued) -> None:
    gc, gn, values = _library(SEED)
    gc_other, _, values_other = _library(SEED + 1)
    assert not _same(gc_other, gc) and not _same(values_other["naswot"], values["naswot"])  # the seed matters: the rule is not vacuous

    cli = _cli(SEED)
    assert _same((cli["gc"], cli["gn"]), (gc, gn))
    assert _same(cli["proxies"], values)

    settings, backend, tc = queued()
    opts = {"seed": SEED, "proxies": PROXIES}
    score = _finished(tc, backend, settings, {"kind": "score", "model": SPEC, "data": DATA, "options": opts})["result"]
    assert _same((score["gc"], score["gn"]), (gc, gn))
    assert _same(score["proxies"], values)

    batch = _finished(tc, backend, settings, {"kind": "batch", "models": [{"arch": "nb201", "args": {**ARGS, "cell": OTHER}},
                                                                          SPEC], "data": DATA, "options": opts,
                                              "rank_by": "naswot"})
    group = tc.get(f"/v1/groups/{batch['group_id']}").json()
    (entry,) = [e for e in group["entries"] if e["model"]["args"]["cell"] == CELL]
    assert entry["index"] == 1 and _same((entry["result"]["gc"], entry["result"]["gn"]), (gc, gn))
    assert _same(entry["result"]["proxies"], values)

    other = {"arch": "nb201", "args": {**ARGS, "cell": OTHER}}
    found = _finished(tc, backend, settings, {"kind": "search", "models": [other, SPEC], "data": DATA, "k": 2,
                                              "proxy": "naswot", "seed": SEED})["result"]
    (cand,) = [c for c in found["top"] if c["model"]["args"]["cell"] == CELL]
    assert cand["index"] == 1 and _same(cand["score"], values["naswot"])

    cells = REPO / "tests" / f".seed_rule_cells_{os.getpid()}.txt"  # the CLI reads a file of specs
    cells.write_text(json.dumps(other) + "\n" + json.dumps(SPEC) + "\n")
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        p = run_initscore("search", "--cells", str(cells), "--k", "2", "--proxy", "naswot", "--data", "synthetic",
                          "--batch-size", "6", "--data-seed", "2", "--seed", str(SEED), "--json",
                          cwd=REPO, env=env, timeout=180)
    finally:
        cells.unlink()
    assert p.returncode == 0, p.stderr
    (cli_cand,) = [c for c in json.loads(p.stdout)["top"] if c["model"]["args"]["cell"] == CELL]
    assert _same(cli_cand["score"], values["naswot"])


def test_fresh_batch_per_architecture_follows_the_same_rule(queued) -> None:
    from initscore import data, proxies

    from svc_helpers import expect_problem

    fresh = {**DATA, "fresh_per_arch": True}
    td = data.load(DATA)
    (row,) = proxies.score_architectures([SPEC], lambda s: td.batch(DATA["batch_size"], s), PROXIES, seed=SEED)
    _, _, shared = _library(SEED)
    assert not _same(row.values["naswot"], shared["naswot"])  # its own batch, not the shared one

    settings, backend, tc = queued()
    opts = {"seed": SEED, "proxies": PROXIES}
    score = _finished(tc, backend, settings, {"kind": "score", "model": SPEC, "data": fresh, "options": opts})["result"]
    assert _same(score["proxies"], row.values)
    batch = _finished(tc, backend, settings, {"kind": "batch", "models": [{"arch": "nb201", "args": {**ARGS, "cell": OTHER}},
                                                                          SPEC], "data": fresh, "options": opts,
                                              "rank_by": "naswot"})
    group = tc.get(f"/v1/groups/{batch['group_id']}").json()
    (entry,) = [e for e in group["entries"] if e["model"]["args"]["cell"] == CELL]
    assert _same(entry["result"]["proxies"], row.values) and _same(entry["result"]["gc"], score["gc"])
    # a rectify job reads its data's own batches: refused at submit, nothing queued
    body = expect_problem(tc.post("/v1/jobs", json={"kind": "rectify", "model": SPEC, "data": fresh}), 422)
    assert "fresh_per_arch" in json.dumps(body)
    assert backend.queue_depths().get("initscore-rectify", 0) == 0
