"""Micro experiment runs end to end, config validation, summary statistics, the CLI's error path."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from warm_cli import run_initscore

from initscore.errors import OptionsError
from initscore.experiments import PRESETS, override, parse_config, preset
from initscore.experiments.summary import markdown, stats

REPO = Path(__file__).resolve().parents[2]
CIFAR = REPO.parent / "shared" / "data" / "cifar10_jpeg"

MICRO = {
    "name": "micro",
    "models": [{"arch": "mlp", "args": {"in_features": 192, "hidden": 16, "depth": 2}, "label": "mlp"}],
    "data": {"kind": "synthetic", "shape": [3, 8, 8], "train_size": 128, "test_size": 48,
             "heldout_size": 32, "heldout_batch_size": 16},
    "methods": ["kaiming", "nio"],
    "seeds": [0],
    "recipe": {"epochs": 1, "batch_size": 32},
    "init": {"iters": 2, "batch_size": 32},
}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    from initscore.experiments import run_experiment

    out = tmp_path_factory.mktemp("micro")
    res = run_experiment(MICRO, out, log=lambda s: None)
    return res, out


def test_micro_run_writes_json_with_all_fields(micro_run):
    res, out = micro_run
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["name"] == "micro"
    assert len(data["runs"]) == 2
    assert {r["method"] for r in data["runs"]} == {"kaiming", "nio"}
    for r in data["runs"]:
        assert r["train"]["epochs"] and r["train"]["epochs"][0]["epoch"] == 1
        e = r["train"]["epochs"][0]
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "train_seconds", "wall_seconds"):
            assert isinstance(e[key], float) and math.isfinite(e[key]), key
        assert 0.0 <= e["test_acc"] <= 100.0
        init = r["init"]
        for part in ("exact_before", "exact_after", "heldout_before", "heldout_after"):
            assert {"gc", "gn", "g_max"} <= set(init[part]), part
        assert len(init["layers_before"]) == len(init["layers_after"]) == 4  # 2 Linear layers: weight + bias
        assert r["init_fraction"] is not None and r["init_fraction"] > 0
        assert r["train"]["clip_grad_norm"] == 1.0  # an MLP has no BatchNorm
    k, n = (next(r for r in data["runs"] if r["method"] == m) for m in ("kaiming", "nio"))
    # same seed -> same initial weights -> same scores before rectification
    assert k["init"]["exact_before"] == n["init"]["exact_before"]
    assert k["init"]["exact_after"] == k["init"]["exact_before"]  # kaiming changes nothing
    assert n["init"]["gamma"] is not None and n["init"]["iters"] == 2
    # MICRO rectifies in batch mode: the per-batch held-out g_max (recorded in sample mode) is not its own mode
    assert len(n["init"]["exact_after"]["g_max_batches"]) == 2
    assert all(r["heldout_batches_within_gamma"] is None for r in data["summary"])
    assert {row["method"] for row in data["summary"]} == {"kaiming", "nio"}
    assert data["comparisons"][0]["method"] == "nio" and data["comparisons"][0]["n_pairs"] == 1


def test_heldout_gmax_per_batch_in_sample_mode(tmp_path):
    """Each held-out batch's g_max is recorded; in sample mode (NIO's own) the report counts the batches within
    gamma next to the runs, since a held-out batch is as large as a rectification batch."""
    from initscore.experiments import run_experiment

    cfg = {**MICRO, "methods": ["nio"], "init": {**MICRO["init"], "mode": "sample", "batch_size": 16}}
    (n,) = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
    per, gamma = n["init"]["exact_after"]["g_max_batches"], n["init"]["gamma"]
    assert n["init"]["mode"] == n["init"]["exact_after"]["mode"] == "sample"
    assert len(per) == 2 and n["init"]["exact_after"]["g_max"] == max(per) == n["init"]["heldout_after"]["g_max"]
    data = json.loads((tmp_path / "results.json").read_text())
    (row,) = data["summary"]
    within = sum(v <= gamma for v in per)
    assert row["heldout_batches_within_gamma"] == [within, 2]
    assert row["heldout_gmax_within_gamma"] == int(max(per) <= gamma)
    line = next(ln for ln in markdown(data).splitlines() if ln.startswith("| mlp | nio |") and "batches)" in ln)
    assert f"| {row['heldout_gmax_within_gamma']}/1 ({within}/2 batches) |" in line


def test_verify_batches_reach_the_run_record_and_the_report(tmp_path):
    """init.verify_batches: each NIO run records its verification; the report counts the verified runs."""
    from initscore.experiments import run_experiment
    from initscore.cli.experiment_cmds import resolve

    init = {**MICRO["init"], "mode": "sample", "batch_size": 16, "select": "feasible", "gamma_margin": 0.3,
            "verify_batches": 2}
    (n,) = run_experiment({**MICRO, "methods": ["nio"], "init": init}, tmp_path, log=lambda s: None, plots=False).runs
    v = n["init"]["verification"]
    assert v["batches"] == 2 and v["checked"][-1]["iterate"] == n["init"]["returned_iterate"]
    data = json.loads((tmp_path / "results.json").read_text())
    (row,) = data["summary"]
    assert row["verified"] == [int(v["passed"]), 1, 2]
    assert f"| 1/1; {int(v['passed'])}/1 verified on 2 more batches |" in markdown(data)
    # the command-line flag sets it for every model
    assert resolve("cpu", None, rectify={"verify_batches": 3}).init.rectify.verify_batches == 3
    with pytest.raises(Exception, match="verify_batches"):
        parse_config({**MICRO, "init": {**MICRO["init"], "verify_batches": -1}})


def test_micro_run_writes_non_empty_pngs(micro_run):
    res, out = micro_run
    assert len(res.files) == 2
    for f in res.files:
        p = Path(f)
        assert p.exists() and p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "results_mlp_curves.png").exists() and (out / "results_mlp_fig3.png").exists()


def test_markdown_tables_from_results(micro_run):
    res, _ = micro_run
    md = markdown(res.to_dict())
    assert "| mlp | kaiming |" in md and "| mlp | nio |" in md
    assert "Paired differences against Kaiming" in md


@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10_jpeg not present")
def test_micro_run_on_real_cifar10(tmp_path):
    from initscore.experiments import run_experiment

    cfg = dict(MICRO, data={"kind": "cifar10", "root": str(CIFAR), "train_size": 200, "test_size": 100,
                            "heldout_size": 32, "heldout_batch_size": 16},
               models=[{"arch": "mlp", "args": {"hidden": 16, "depth": 2}, "label": "mlp"}], methods=["kaiming"])
    res = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False)
    (run,) = res.runs
    assert run["train"]["epochs"][0]["test_acc"] >= 0.0
    assert (tmp_path / "results.json").exists()


def test_bad_configs_give_one_line_options_errors():
    for bad, needle in [
        ({**MICRO, "methods": ["kaiming", "bogus"]}, "methods"),
        ({**MICRO, "seeds": [0, 0]}, "unique"),
        ({**MICRO, "recipe": {"epochs": 0}}, "epochs"),
        ({**MICRO, "models": []}, "models"),
        ({**MICRO, "surprise": 1}, "surprise"),
        ({**MICRO, "data": {**MICRO["data"], "heldout_batch_size": 64}}, "heldout_batch_size"),
        ({**MICRO, "recipe": {"epochs": 2, "warmup_epochs": 2}}, "warmup"),
    ]:
        with pytest.raises(OptionsError) as ei:
            parse_config(bad)
        assert needle in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(OptionsError):
        parse_config([1, 2])
    with pytest.raises(OptionsError):
        preset("nope")


def test_unknown_arch_fails_before_any_work(tmp_path):
    from initscore.errors import SpecError
    from initscore.experiments import run_experiment

    cfg = {**MICRO, "models": [{"arch": "no_such_net"}]}
    with pytest.raises(SpecError):
        run_experiment(cfg, tmp_path, log=lambda s: None)
    assert not (tmp_path / "results.json").exists()


def test_presets_are_valid_and_roundtrip_json():
    for name, cfg in PRESETS.items():
        again = parse_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
        assert again == cfg, name
    cpu = preset("cpu")
    assert {m.args["bn"] for m in cpu.models} == {True, False}
    assert set(cpu.methods) == {"kaiming", "nio", "gradinit", "metainit"} and len(cpu.seeds) == 3
    assert cpu.recipe.momentum == 0.9 and cpu.recipe.weight_decay == 1e-4 and cpu.recipe.clip_grad_norm == "auto"
    small = override(cpu, seeds=[5], recipe={"epochs": 1})
    assert small.seeds == (5,) and small.recipe.epochs == 1 and small.recipe.lr == cpu.recipe.lr
    # gpu: the exploding no-BN ResNet-110 gets the paper's absolute bound, the other networks gamma = 2x g_max
    gpu = preset("gpu")
    gammas = {m.name: (gpu.init_for(m).rectify.gamma, gpu.init_for(m).gamma_factor) for m in gpu.models}
    assert gammas == {"resnet110_nobn": (5.0, None), "resnet110_bn": (None, None), "wrn28_10_nobn": (None, None),
                      "wrn28_10_bn": (None, None)}


def test_stats_mean_and_sample_std():
    s = stats([1.0, 2.0, 3.0, None, float("nan")])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert stats([])["mean"] is None
    assert stats([4.0])["std"] == 0.0


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_initscore("experiment", *args, env=env, cwd=REPO, timeout=120)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    for args in (["--preset", "nope", "--out", str(tmp_path)],
                 ["--preset", "cpu", "--seeds", "a,b", "--out", str(tmp_path)],
                 ["--preset", "cpu", "--epochs", "0", "--out", str(tmp_path)],
                 ["--preset", "cpu", "--arch", "resnet20", "--args", "{bad", "--out", str(tmp_path)],
                 ["--config", str(tmp_path / "missing.json"), "--out", str(tmp_path)],
                 ["--preset", "cpu", "--optimizer", "rmsprop", "--out", str(tmp_path)],
                 ["--preset", "cpu", "--grad-clip", "-1", "--out", str(tmp_path)]):
        p = _cli(*args)
        assert p.returncode == 2, (args, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, p.stderr)


def test_cli_show_config_applies_overrides():
    p = _cli("--preset", "cpu", "--methods", "kaiming,nio", "--seeds", "7", "--epochs", "2", "--show-config")
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    assert cfg["methods"] == ["kaiming", "nio"] and cfg["seeds"] == [7] and cfg["recipe"]["epochs"] == 2


def test_failed_rectifications_are_reported_not_dropped(micro_run):
    from initscore.experiments.summary import summarize

    res, _ = micro_run
    runs = list(res.runs) + [{"model": "mlp", "method": "metainit", "seed": 0, "error": "RuntimeError: boom"}]
    rows, comps = summarize(runs)
    row = next(r for r in rows if r["method"] == "metainit")
    assert row["failed"] == 1 and row["seeds"] == [] and "boom" in row["errors"][0]
    md = markdown({"summary": rows, "comparisons": comps, "config": {}})
    assert "Failed rectifications" in md and "boom" in md


def test_gamma_factor_two_reproduces_the_engine_default(micro_run, tmp_path):
    from initscore.experiments import run_experiment

    res, _ = micro_run
    default_gamma = next(r for r in res.runs if r["method"] == "nio")["init"]["gamma"]
    cfg = {**MICRO, "methods": ["nio"], "init": {**MICRO["init"], "gamma_factor": 2.0}}
    (run,) = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
    assert run["init"]["gamma"] == pytest.approx(default_gamma, rel=1e-6)
    cfg = {**MICRO, "methods": ["nio"], "init": {**MICRO["init"], "gamma_factor": 1.0}}
    (run1,) = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
    assert run1["init"]["gamma"] == pytest.approx(default_gamma / 2, rel=1e-6)


def test_init_margin_and_select_reach_rectify_and_the_record(tmp_path):
    from initscore.experiments import run_experiment

    cfg = {**MICRO, "methods": ["nio"],
           "init": {**MICRO["init"], "iters": 3, "gamma_margin": 0.3, "select": "feasible", "gn_weight": 0.5}}
    (run,) = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
    init = run["init"]
    assert init["select"] == "feasible" and init["gamma_margin"] == 0.3
    assert init["iters"] == 3 and init["final_iterate"]["it"] == 4  # the final iterate measured on a 4th batch
    k = init["returned_iterate"]
    assert 0 <= k <= 3 and init["last_iteration"]["it"] == k + 1  # the record of the returned iterate
    p = _cli("--preset", "cpu", "--gamma-margin", "0.2", "--select", "feasible", "--mode", "sample",
             "--nio-batch-size", "32", "--gn-weight", "0", "--sub-batches", "4", "--show-config")
    assert p.returncode == 0, p.stderr
    init = json.loads(p.stdout)["init"]
    i = {**init["rectify"], "batch_size": init["batch_size"]}
    assert (i["gamma_margin"], i["select"], i["mode"], i["batch_size"], i["gn_weight"], i["sub_batches"]) == \
        (0.2, "feasible", "sample", 32, 0.0, 4)
    with pytest.raises(OptionsError):
        parse_config({**MICRO, "init": {"gamma_margin": 1.0}})


def test_optimizer_and_grad_clip_reach_rectify(tmp_path):
    from initscore.experiments import run_experiment

    p = _cli("--preset", "cpu", "--optimizer", "rescale_adam", "--grad-clip", "0.5", "--show-config")
    assert p.returncode == 0, p.stderr
    i = json.loads(p.stdout)["init"]["rectify"]
    assert (i["optimizer"], i["grad_clip"]) == ("rescale_adam", 0.5)
    runs = {}
    for opt in ("adam", "rescale_adam"):
        cfg = {**MICRO, "methods": ["nio"], "init": {**MICRO["init"], "iters": 3, "optimizer": opt}}
        (run,) = run_experiment(cfg, tmp_path / opt, log=lambda s: None, plots=False).runs
        runs[opt] = run["init"]["scales"]
    assert runs["adam"] != runs["rescale_adam"]
    with pytest.raises(OptionsError):
        parse_config({**MICRO, "init": {"optimizer": "rmsprop"}})
    with pytest.raises(OptionsError):
        parse_config({**MICRO, "init": {"grad_clip": -1}})


def test_scale_tensors_reach_rectify_and_the_record(tmp_path):
    from initscore.experiments import run_experiment

    p = _cli("--preset", "cpu", "--scale-tensors", "fc.weight, !conv1.*", "--show-config")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["init"]["rectify"]["scale_tensors"] == ["fc.weight", "!conv1.*"]
    last = "net.3.weight"  # MICRO's mlp: net.1.weight, net.1.bias, net.3.weight, net.3.bias
    cfg = {**MICRO, "methods": ["nio", "gradinit"], "init": {**MICRO["init"], "iters": 3, "scale_tensors": [last]}}
    nio_run, gradinit_run = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
    init = nio_run["init"]
    assert init["scales"][last] != 1.0
    assert init["fixed"] == ["net.1.weight", "net.1.bias", "net.3.bias"]
    assert all(init["scales"][n] == 1.0 for n in init["fixed"])
    # the baselines scale every tensor, as published
    assert gradinit_run["init"]["fixed"] == [] and gradinit_run["init"]["scales"]["net.1.weight"] != 1.0
    with pytest.raises(OptionsError):
        parse_config({**MICRO, "init": {"scale_tensors": []}})
    with pytest.raises(OptionsError, match="'fc.weight' matches no scalable"):  # before any run, nothing written
        run_experiment({**cfg, "init": {**cfg["init"], "scale_tensors": ["fc.weight"]}}, tmp_path / "bad",
                       log=lambda s: None, plots=False)
    assert not (tmp_path / "bad" / "results.json").exists()
    p = _cli("--preset", "cpu", "--scale-tensors", " , ", "--out", str(tmp_path))
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1


def test_per_model_init_overrides(tmp_path):
    """A model's ``init`` overrides the experiment's for that model only; bad overrides are one-line errors;
    a command-line init flag replaces a model's own override; --arch keeps a matching model's overrides."""
    from initscore.experiments import run_experiment

    two = {**MICRO, "methods": ["nio"], "init": {**MICRO["init"], "iters": 2},
           "models": [{**MICRO["models"][0], "label": "a", "init": {"scale_tensors": ["net.3.weight"]}},
                      {**MICRO["models"][0], "label": "b"}]}
    cfg = parse_config(two)
    assert cfg.init_for(cfg.models[0]).rectify.scale_tensors == ["net.3.weight"]
    assert cfg.init_for(cfg.models[1]) == cfg.init
    a, b = run_experiment(two, tmp_path, log=lambda s: None, plots=False).runs
    assert a["init"]["fixed"] == ["net.1.weight", "net.1.bias", "net.3.bias"] and b["init"]["fixed"] == []
    assert a["init"]["exact_before"] == b["init"]["exact_before"]  # same network and data, only NIO's scales differ
    for bad in ({"scale_tensors": []}, {"lr": -1}, {"nope": 1}):
        with pytest.raises(OptionsError, match="model 'a': init"):
            parse_config({**two, "models": [{**two["models"][0], "init": bad}]})
    cpu = preset("cpu")
    assert cpu.init_for(cpu.models[0]).rectify.scale_tensors == ["fc.weight"]
    assert cpu.init_for(cpu.models[1]) == cpu.init
    p = _cli("--preset", "cpu", "--arch", "resnet20", "--args", '{"bn": false}', "--show-config")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["models"] == [cpu.models[0].model_dump(mode="json")]
    p = _cli("--preset", "cpu", "--scale-tensors", "!fc.*", "--show-config")
    models = json.loads(p.stdout)["models"]
    assert [m["init"] for m in models] == [None, None]



def test_gamma_and_gamma_factor_are_one_bound_across_overrides():
    """A model's absolute gamma wins over the experiment's gamma_factor (which would otherwise override it), and
    either command-line flag replaces a model's bound of either kind."""
    cfg = parse_config({**MICRO, "init": {**MICRO["init"], "gamma_factor": 3.0},
                        "models": [{**MICRO["models"][0], "label": "a", "init": {"gamma": 5.0}},
                                   {**MICRO["models"][0], "label": "b", "init": {"gamma_factor": 1.5}},
                                   {**MICRO["models"][0], "label": "c"}]})
    bounds = [(cfg.init_for(m).rectify.gamma, cfg.init_for(m).gamma_factor) for m in cfg.models]
    assert bounds == [(5.0, None), (None, 1.5), (None, 3.0)]
    for flag, value in (("--gamma-factor", "2"), ("--gamma", "7")):
        p = _cli("--preset", "gpu", flag, value, "--show-config")
        assert p.returncode == 0, p.stderr
        assert [m["init"] for m in json.loads(p.stdout)["models"]] == [None] * 4  # resnet110_nobn's gamma 5 gone


def test_recipe_cutout_and_param_groups_reach_training(tmp_path):
    """The GradInit recipe options change training; the defaults leave it as it was (same losses twice)."""
    from initscore.experiments import run_experiment

    def loss(**recipe):
        cfg = {**MICRO, "methods": ["kaiming"], "recipe": {**MICRO["recipe"], **recipe}}
        (run,) = run_experiment(cfg, tmp_path, log=lambda s: None, plots=False).runs
        return run["train"]["epochs"][-1]["train_loss"]

    base = loss()
    assert loss() == base
    assert loss(cutout=4) != base
    assert loss(nobn_bias_lr_scale=0.1) != base  # the MLP has no BatchNorm: its biases train 10x slower
    assert loss(bn_weight_decay=False) == base  # ... and no BatchNorm parameters to exempt
    with pytest.raises(OptionsError):
        parse_config({**MICRO, "recipe": {"cutout": -1}})
    gpu = preset("gpu").recipe
    assert (gpu.cutout, gpu.bn_weight_decay, gpu.nobn_bias_lr_scale) == (16, False, 0.1)


def test_baselines_keep_their_own_mode_and_batch_size(tmp_path):
    from initscore.experiments import run_experiment

    cfg = {**MICRO, "methods": ["nio", "gradinit"],
           "init": {**MICRO["init"], "mode": "sample", "batch_size": 16, "baseline_mode": "batch",
                    "baseline_batch_size": 32}}
    lines: list[str] = []
    runs = {r["method"]: r["init"] for r in run_experiment(cfg, tmp_path, log=lines.append, plots=False).runs}
    assert (runs["nio"]["mode"], runs["nio"]["batch_size"]) == ("sample", 16)
    assert (runs["gradinit"]["mode"], runs["gradinit"]["batch_size"]) == ("batch", 32)
    # the log labels each rectification's own held-out GC with the mode it ran in
    (nio_line,) = [ln for ln in lines if " nio] init " in ln]
    (gi_line,) = [ln for ln in lines if " gradinit] init " in ln]
    # (the first label is the table's held-out mode, sample by default; the second the rectification's own)
    assert nio_line.count("sample-GC") == 2 and "batch-GC" not in nio_line
    assert gi_line.count("sample-GC") == 1 and gi_line.count("batch-GC") == 1


def test_report_merges_folders_and_renames_repeated_methods(micro_run):
    from initscore.cli.experiment_cmds import merge_reports

    _, out = micro_run
    merged = merge_reports([str(out), str(out / "results.json")])
    methods = {r["method"] for r in merged["runs"]}
    assert methods == {"kaiming", "nio", f"kaiming@{out.name}", f"nio@{out.name}"}
    assert any(c["method"] == f"nio@{out.name}" for c in merged["comparisons"])
    with pytest.raises(OptionsError):
        merge_reports([str(out / "nothing_here")])


def test_cli_preset_help_lists_the_registry(monkeypatch):
    """`initscore experiment --help` names every registered preset; the list is read from PRESETS, not typed."""
    from initscore.cli.experiment_cmds import preset_help
    from initscore.experiments import config

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "TERMINAL_WIDTH": "400"}
    p = run_initscore("experiment", "--help", env=env, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if "--preset" in ln)
    shown = line.split("named experiment:", 1)[1].strip(" │|").split(" | ")
    assert [s.strip(" │") for s in shown] == list(PRESETS)
    assert {"paper-cifar", "paper-cifar100", "gpu-vit"} <= set(PRESETS)
    monkeypatch.setitem(config.PRESETS, "added-later", PRESETS["smoke"])
    assert preset_help().endswith("| added-later")


# The init of the `cpu` preset as results.json files stored it before InitConfig composed RectifyOptions.
FLAT_CPU_INIT = {"iters": 20, "lr": 0.1, "gamma": None, "gamma_factor": None, "sub_batches": 2, "overlap": 0.6,
                 "mode": "sample", "batch_size": 64, "optimizer": "adam", "grad_clip": 1.0, "scale_tensors": None,
                 "min_scale": 0.01, "heldout_mode": "sample", "gn_weight": 1.0, "gamma_margin": 0.3,
                 "select": "feasible", "verify_batches": 0, "baseline_mode": "batch", "baseline_batch_size": 64}


def test_init_composes_rectify_options_and_declares_none_of_them():
    """InitConfig holds the engine's RectifyOptions under ``rectify`` and declares no rectify option itself;
    every option is a flag of `initscore experiment`, generated from RectifyOptions."""
    from initscore.contract import RectifyOptions
    from initscore.experiments import InitConfig
    from initscore.experiments.config import PER_RUN

    assert InitConfig.model_fields["rectify"].annotation is RectifyOptions
    assert set(InitConfig.model_fields) & set(RectifyOptions.model_fields) == set()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "TERMINAL_WIDTH": "400"}
    p = run_initscore("experiment", "--help", env=env, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    flags = {"lr": "--nio-lr", "split": "--sub-batch-split"}
    for field in set(RectifyOptions.model_fields) - set(PER_RUN):
        assert f" {flags.get(field, '--' + field.replace('_', '-'))} " in p.stdout, field


def test_flat_init_of_saved_configs_loads_as_the_nested_one():
    """A config saved with the rectify options beside the init's own fields (and a model's flat override) loads
    into the same config as the preset; a key given both ways, or a per-run option, is a one-line error."""
    cpu = preset("cpu")
    saved = {**cpu.model_dump(mode="json"), "init": FLAT_CPU_INIT}
    saved["models"] = [{**m, "init": {"scale_tensors": ["fc.weight"]} if m["init"] else None} for m in saved["models"]]
    assert parse_config(saved) == cpu
    assert parse_config(json.loads(json.dumps(cpu.model_dump(mode="json")))) == cpu
    small = override(cpu, init={"iters": 5, "batch_size": 32})  # flat changes of options, as before
    assert (small.init.rectify.iters, small.init.batch_size, small.init.rectify.mode) == (5, 32, "sample")
    nested = {**MICRO, "init": {"batch_size": 32, "rectify": {"iters": 2}}}
    assert parse_config(nested) == parse_config(MICRO)
    for bad, needle in [({"iters": 2, "rectify": {"iters": 3}}, "both flat and under 'rectify'"),
                        ({"rectify": {"method": "gradinit"}}, "rectify.method is not an experiment option"),
                        ({"seed": 3}, "rectify.seed is not an experiment option"),
                        ({"rectify": {"nope": 1}}, "init.rectify.nope")]:
        with pytest.raises(OptionsError, match=needle) as ei:
            parse_config({**MICRO, "init": bad})
        assert "\n" not in str(ei.value)


def test_each_run_gets_the_options_object_of_its_method():
    """options_for: the method and seed of the run; the baselines' own mode, no scale_tensors and "feasible" for
    "best"; options a method cannot take are refused when the config is read, before any run."""
    from initscore.contract import RectifyOptions

    cfg = parse_config({**MICRO, "methods": ["kaiming", "nio", "gradinit"],
                        "init": {"rectify": {"iters": 2, "mode": "sample", "select": "best",
                                             "scale_tensors": ["net.3.weight"]},
                                 "batch_size": 16, "baseline_mode": "batch", "baseline_batch_size": 32}})
    nio_opts = cfg.init.options_for("nio", seed=7)
    assert isinstance(nio_opts, RectifyOptions)
    assert (nio_opts.method, nio_opts.seed, nio_opts.mode, nio_opts.select, nio_opts.scale_tensors) == \
        ("nio", 7, "sample", "best", ["net.3.weight"])
    gi = cfg.init.options_for("gradinit", seed=7)
    assert (gi.method, gi.seed, gi.mode, gi.select, gi.scale_tensors) == ("gradinit", 7, "batch", "feasible", None)
    k = cfg.init.options_for("kaiming")
    assert (k.mode, k.select, k.scale_tensors) == ("sample", "feasible", None)
    assert (cfg.init.batch_size_for("nio"), cfg.init.batch_size_for("metainit")) == (16, 32)
    with pytest.raises(OptionsError, match="method 'gradinit': init.rectify: profile='official'"):
        parse_config({**MICRO, "methods": ["nio", "gradinit"],
                      "init": {"rectify": {"profile": "official", "iters": 2}, "batch_size": 32}})
