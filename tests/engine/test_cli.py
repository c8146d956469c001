"""`initscore score` / `rectify` through the real entry point (a real process: exit codes and stderr are real;
forked from a warm interpreter, tests/warm_cli.py, except where torch's import is under test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from warm_cli import run_initscore

ROOT = Path(__file__).resolve().parents[2]
MLP = '{"hidden": 16, "depth": 2, "in_features": 12}'


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return run_initscore(*args, cwd=cwd, env=env, timeout=120)


def test_score_json_on_synthetic():
    p = _run("score", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--layers", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["kind"] == "score" and d["arch"] == "mlp" and d["n"] == 8 and d["mode"] == "sample"
    assert 0.0 <= d["gc"] <= 1.0 and d["g_min"] <= d["gn"] <= d["g_max"]
    assert [layer["name"] for layer in d["layers"]] == ["net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"]
    # the same numbers as the library on the same batch and init
    import torch

    from initscore import data, models
    from initscore.scores import gradcosine

    td = data.load({"kind": "synthetic", "shape": [12], "num_classes": 10, "batch_size": 8, "seed": 0})
    from initscore.proxies.batch import spec_seed

    spec = {"arch": "mlp", "args": json.loads(MLP)}
    torch.manual_seed(spec_seed(spec, 0))  # the weights' seed of every scoring path (--init-seed 0)
    net = models.build(spec)
    s = gradcosine(net, td.batch(8, 0))
    assert d["gc"] == pytest.approx(s.gc, rel=1e-6) and d["gn"] == pytest.approx(s.gn, rel=1e-6)


def test_rectify_writes_safetensors_with_provenance(tmp_path):
    out = tmp_path / "r.safetensors"
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--iters", "3", "--mode", "sample",
             "--heldout-batches", "1", "--optimizer", "rescale_adam", "--grad-clip", "0.5", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["kind"] == "rectify" and len(d["history"]) == 3 and set(d["heldout_after"]) == {"gc", "gn", "g_max"}
    import hashlib

    from safetensors import safe_open

    assert d["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    from initscore.contract import RectifyRequest, request_hash
    from initscore.weights_file import load

    with safe_open(str(out), "pt") as f:
        keys = set(f.keys())
    assert keys == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    state, prov = load(out)
    assert set(state) == keys
    req = prov.request
    assert req["kind"] == "rectify" and req["model"] == {"arch": "mlp", "args": json.loads(MLP)}
    assert req["data"]["kind"] == "synthetic" and req["data"]["batch_size"] == 8
    assert req["options"]["iters"] == 3 and req["options"]["mode"] == "sample"
    assert (req["options"]["optimizer"], req["options"]["grad_clip"]) == ("rescale_adam", 0.5)
    assert prov.request_hash == request_hash(RectifyRequest.model_validate(req))  # the service's hash of it
    assert prov.summary["gamma"] == d["gamma"] and prov.summary["scales"] == d["scales"]
    assert "torch" in prov.versions and prov.arch == "mlp"


def test_rectify_scale_tensors(tmp_path):
    out = tmp_path / "r.safetensors"
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--iters", "3", "--heldout-batches", "1",
             "--scale-tensors", "net.3.*", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["fixed"] == ["net.1.weight", "net.1.bias"] and d["scales"]["net.1.weight"] == 1.0
    assert d["scales"]["net.3.weight"] != 1.0
    from initscore.weights_file import read_provenance

    prov = read_provenance(out)
    assert prov.summary["fixed"] == ["net.1.weight", "net.1.bias"]
    assert prov.request["options"]["scale_tensors"] == ["net.3.*"]


def test_rectify_select_and_verify_batches(tmp_path):
    """--select/--gamma-margin/--verify-batches reach the engine; the verification is in the JSON result and in
    the weights' provenance."""
    out = tmp_path / "v.safetensors"
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--iters", "4", "--heldout-batches", "1",
             "--select", "feasible", "--gamma-margin", "0.2", "--verify-batches", "2", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["select"] == "feasible" and d["gamma_margin"] == 0.2
    v = d["verification"]
    assert v["batches"] == 2 and v["checked"] and v["checked"][-1]["iterate"] == d["returned_iterate"]
    from initscore.weights_file import read_provenance

    prov = read_provenance(out)
    assert prov.summary["verification"] == v
    assert prov.request["options"]["verify_batches"] == 2
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--iters", "4", "--heldout-batches", "1",
             "--select", "feasible", "--verify-batches", "2", "--quiet")
    assert p.returncode == 0, p.stderr
    assert "checked on 2 more batches" in p.stdout


@pytest.mark.parametrize("args,needle", [
    (["score", "--arch", "mlp", "--mode", "exact"], "mode"),
    (["score", "--arch", "nope"], "unknown architecture"),
    (["score", "--arch", "mlp", "--args", "{bad"], "--args"),
    (["score", "--arch", "mlp", "--args", '{"depth": 0}'], "depth"),
    (["score", "--arch", "mlp", "--bn", "running"], "bn"),
    (["score", "--arch", "mlp", "--data", "cifar10", "--root", "/nonexistent/x"], "nonexistent"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--method", "lsuv"], "method"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--out", "w.pt"], ".safetensors"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--optimizer", "rmsprop"], "optimizer"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--optimizer", "rescale_adam", "--grad-clip", "-1"], "grad_clip"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--scale-tensors", "fc.weight"], "matches no scalable"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--scale-tensors", ","], "--scale-tensors"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--verify-batches", "2"], "select='feasible' or 'best'"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--select", "feasible", "--verify-batches", "-1"], "verify_batches"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--select", "first"], "select"),
    (["score", "--arch", "mlp", "--mode", "batch", "--profile", "released"], "profile"),
    (["score", "--arch", "mlp", "--profile", "official"], "batch mode only"),
    (["score", "--arch", "mlp", "--mode", "batch", "--sub-batch-split", "halves"], "split"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--objective", "gc_gn"], "profile='official'"),
    (["rectify", "--arch", "mlp", "--iters", "1", "--profile", "official", "--objective", "gn"], "objective"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    p = _run(*args)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("verb", ["score", "rectify"])
def test_unknown_arch_answers_before_torch_is_imported(verb):
    """A typo in --arch is a torch-free registry check: exit 2, one line, and torch never loaded."""
    code = ("import sys\nfrom initscore.cli import main\nsys.argv = ['initscore', %r, '--arch', 'nope']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n") % verb
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    assert p.stderr.startswith("error: unknown architecture 'nope'") and len(p.stderr.strip().splitlines()) == 1


def test_official_profile_through_the_cli_matches_the_library():
    p = _run("score", "--arch", "mlp", "--args", MLP, "--batch-size", "16", "--mode", "batch", "--profile", "official",
             "--sub-batches", "4", "--overlap", "0.2", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    import torch

    from initscore import data, models
    from initscore.scores import gradcosine

    td = data.load({"kind": "synthetic", "shape": [12], "num_classes": 10, "batch_size": 16, "seed": 0})
    from initscore.proxies.batch import spec_seed

    spec = {"arch": "mlp", "args": json.loads(MLP)}
    torch.manual_seed(spec_seed(spec, 0))  # the weights' seed of every scoring path (--init-seed 0)
    net = models.build(spec)
    s = gradcosine(net, td.batch(16, 0), mode="batch", sub_batches=4, overlap=0.2, profile="official")
    paper = gradcosine(net, td.batch(16, 0), mode="batch", sub_batches=4, overlap=0.2)
    assert d["gc"] == pytest.approx(s.gc, rel=1e-6) and d["n"] == 4
    assert abs(s.gc - paper.gc) > 1e-4
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "16", "--iters", "2", "--profile", "official",
             "--objective", "gc_gn_sqrt", "--sub-batches", "4", "--overlap", "0.2", "--gamma", "1e6",
             "--heldout-batches", "1", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert len(r["history"]) == 2 and not any(h["constrained"] for h in r["history"])


def test_rectify_preset_fills_what_the_command_line_leaves_out(tmp_path):
    """--preset official-imagenet sets the released config's settings; flags given explicitly win."""
    out = tmp_path / "p.safetensors"
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--preset", "official-imagenet", "--iters", "2",
             "--batch-size", "16", "--gamma", "1e6", "--heldout-batches", "1", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert len(d["history"]) == 2 and d["gamma"] == 1e6
    from initscore.weights_file import read_provenance

    prov = read_provenance(out)
    hp = {**prov.request["options"], "batch_size": prov.request["data"]["batch_size"]}
    assert prov.summary["preset"] == "official-imagenet" and hp["batch_size"] == 16 and hp["iters"] == 2
    assert (hp["profile"], hp["objective"], hp["sub_batches"], hp["overlap"], hp["lr"], hp["optimizer"], hp["split"]) \
        == ("official", "gc_gn_sqrt", 4, 0.2, 0.003, "rescale_adam", "official")
    p = _run("rectify", "--arch", "mlp", "--preset", "paper-galaxy", "--iters", "1")
    assert p.returncode == 2 and p.stderr.startswith("error:") and "paper-galaxy" in p.stderr


def test_rectify_preset_help_lists_the_registry(monkeypatch):
    """`initscore rectify --help` names every NIO preset; the list is read from NIO_PRESETS, not typed."""
    from initscore.cli.engine_cmds import nio_preset_help
    from initscore.experiments import config

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "TERMINAL_WIDTH": "400"}
    p = run_initscore("rectify", "--help", env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if "--preset" in ln)
    shown = line.split("explicitly win:", 1)[1].strip(" │|").split(" | ")
    assert [s.strip(" │") for s in shown] == list(config.NIO_PRESETS)
    assert {"paper-cifar", "paper-imagenet", "official-imagenet"} <= set(config.NIO_PRESETS)
    monkeypatch.setitem(config.NIO_PRESETS, "added-later", config.NIO_PRESETS["paper-cifar"])
    assert nio_preset_help().endswith("| added-later")


def test_score_and_rectify_go_through_the_services_driver():
    """The CLI builds the contract request `initscore submit` would send and runs it with initscore.jobs.run_job:
    same numbers as the job, same validation (a request field the contract refuses is named)."""
    from initscore.jobs import run_job

    p = _run("score", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--seed", "3", "--init-seed", "5", "--json")
    assert p.returncode == 0, p.stderr
    cli = json.loads(p.stdout)
    req = {"kind": "score", "model": {"arch": "mlp", "args": json.loads(MLP)},
           "data": {"kind": "synthetic", "shape": [12], "num_classes": 10, "batch_size": 8, "seed": 3},
           "options": {"seed": 5}}
    job, _, _ = run_job(req)
    assert (cli["gc"], cli["gn"], cli["g_max"], cli["params"]) == (job.gc, job.gn, job.g_max, job.params)
    p = _run("score", "--arch", "mlp", "--args", MLP, "--sub-batches", "1")
    assert p.returncode == 2 and "options.sub_batches" in p.stderr


def test_any_option_of_the_contract_is_reachable_with_opt():
    p = _run("rectify", "--arch", "mlp", "--args", MLP, "--batch-size", "8", "--iters", "2", "--heldout-batches", "1",
             "-o", "gn_weight=0.5", "-o", "select=feasible", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["select"] == "feasible"
    for bad, needle in ((["-o", "nonsense=1"], "nonsense"), (["-o", "gn_weight"], "KEY=VALUE"),
                        (["-o", "gn_weight=-1"], "gn_weight")):
        p = _run("rectify", "--arch", "mlp", "--args", MLP, "--iters", "1", *bad)
        assert p.returncode == 2 and needle in p.stderr and p.stderr.startswith("error:"), p.stderr
