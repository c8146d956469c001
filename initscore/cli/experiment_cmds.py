"""`initscore experiment`: train from kaiming / nio / gradinit / metainit initializations and compare.

Examples:
  initscore experiment --preset cpu --out runs/exp_cpu
  initscore experiment --preset smoke --out runs/smoke --methods kaiming,nio
  initscore experiment --preset cpu --arch resnet20 --args '{"bn": false}' --epochs 1 --seeds 0 --out runs/x
  initscore experiment --config my_experiment.json --out runs/y
  initscore experiment --preset gpu --out runs/exp_gpu          # on a CUDA machine
  initscore experiment --report runs/exp_cpu                    # print the tables of a finished run
  initscore experiment --preset cpu --show-config               # print the resolved config as JSON

The rectification flags (--iters, --nio-lr, --mode, --profile, ...) are generated from
initscore.contract.RectifyOptions, the options the experiment passes to initscore.nio.rectify.

torch is imported only when a run starts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from initscore.cli.options import csv_list, options_from
from initscore.contract import RectifyOptions
from initscore.errors import OptionsError, SpecError
from initscore.experiments.config import PER_RUN


def resolve(preset_name: str | None, config_path: str | None, *, methods: str | None = None,
            seeds: str | None = None, epochs: int | None = None, arch: str | None = None,
            args: str | None = None, train_size: int | None = None, test_size: int | None = None,
            gamma_factor: float | None = None, device: str | None = None, root: str | None = None,
            nio_batch_size: int | None = None, rectify: dict[str, Any] | None = None) -> Any:
    """The ExperimentConfig from a preset or a JSON file plus command-line overrides (torch-free)."""
    from initscore.experiments.config import override, parse_config, preset

    if (preset_name is None) == (config_path is None):
        raise OptionsError("give exactly one of --preset NAME or --config FILE.json")
    if config_path is not None:
        p = Path(config_path)
        if not p.is_file():
            raise OptionsError(f"--config {config_path}: no such file")
        try:
            cfg = parse_config(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise OptionsError(f"--config {config_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    else:
        cfg = preset(preset_name)  # type: ignore[arg-type]
    changes: dict[str, Any] = {"methods": csv_list(methods, "methods"), "seeds": csv_list(seeds, "seeds", int),
                               "device": device}
    if epochs is not None:
        changes["recipe"] = {"epochs": epochs}
    data: dict[str, Any] = {}
    if train_size is not None:
        data["train_size"] = train_size
    if test_size is not None:
        data["test_size"] = test_size
    if root is not None:
        data["root"] = root
    if data:
        changes["data"] = data
    own = {k: v for k, v in (("gamma_factor", gamma_factor), ("batch_size", nio_batch_size)) if v is not None}
    rect = dict(rectify or {})
    init: dict[str, Any] = {**own, **({"rectify": {**cfg.init.rectify.model_dump(exclude_unset=True), **rect}}
                                     if rect else {})}
    if init:
        changes["init"] = init
    keep = [m.model_dump(mode="json") for m in cfg.models]
    # a command-line init flag applies to every model: it replaces a model's own override (gamma and gamma_factor
    # set one bound between them, so either flag replaces both)
    bound = {"gamma", "gamma_factor"} & (set(own) | set(rect))
    for m in keep:
        if m.get("init"):
            mine = {k: v for k, v in m["init"].items() if k not in own and not (k == "gamma_factor" and bound)}
            mine_rect = {k: v for k, v in (mine.pop("rectify", None) or {}).items()
                         if k not in rect and not (k == "gamma" and bound)}
            m["init"] = {**mine, **({"rectify": mine_rect} if mine_rect else {})} or None
    if init:
        changes["models"] = keep
    if args is not None and arch is None:
        raise OptionsError("--args needs --arch")
    if arch is not None:
        try:
            a = json.loads(args) if args else {}
        except json.JSONDecodeError as exc:
            raise SpecError(f"--args must be a JSON object, e.g. '{{\"bn\": false}}' ({exc.msg})") from None
        if not isinstance(a, dict):
            raise SpecError("--args must be a JSON object, e.g. '{\"bn\": false}'")
        from initscore import models

        models.validate_spec({"arch": arch, "args": a})
        # a model of the config with this spec keeps its label and init overrides (e.g. --preset cpu --arch
        # resnet20 --args '{"bn": false}' is the preset's no-BN model as it runs there)
        same = [m for m in keep if m["arch"] == arch and m.get("args", {}) == a]
        changes["models"] = same[:1] or [{"arch": arch, "args": a}]
    return override(cfg, **changes)


def merge_reports(paths: list[str]) -> dict[str, Any]:
    """Load results.json files; runs of later files that repeat a (model, method, seed) of an earlier one
    are renamed ``method@<folder name>`` so two settings of one method can share the tables."""
    from initscore.experiments.summary import summarize

    if not paths:
        raise OptionsError("--report needs a results folder (or several, comma-separated)")
    merged: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    for path in paths:
        p = Path(path.strip())
        p = p / "results.json" if p.is_dir() else p
        if not p.is_file():
            raise OptionsError(f"--report {path}: no results.json there")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError:
            raise OptionsError(f"--report {path}: results.json is not valid JSON") from None
        if merged is None:
            merged = data
        seen = {(r["model"], r["method"], r["seed"]) for r in runs}
        for r in data.get("runs", []):
            if (r["model"], r["method"], r["seed"]) in seen:
                r = {**r, "method": f"{r['method']}@{p.parent.name}"}
            runs.append(r)
    assert merged is not None
    # tables always recomputed from the raw runs (a results.json written by older code keeps its runs)
    summary, comps = summarize(runs)
    return {**merged, "runs": runs, "summary": summary, "comparisons": comps}


def preset_help() -> str:
    """The --preset help: every name of the preset registry (``initscore.experiments.config.PRESETS``)."""
    from initscore.experiments.config import PRESETS

    return "named experiment: " + " | ".join(PRESETS)


def register(app: typer.Typer) -> None:
    @app.command("experiment")
    @options_from(RectifyOptions, flags={"lr": "--nio-lr", "split": "--sub-batch-split"}, skip=PER_RUN)
    def experiment(
        preset: Optional[str] = typer.Option(None, "--preset", help=preset_help()),
        config: Optional[str] = typer.Option(None, "--config", help="an ExperimentConfig as a JSON file"),
        out: Optional[str] = typer.Option(None, "--out", help="output folder for results.json and PNG plots"),
        methods: Optional[str] = typer.Option(None, help="comma-separated: kaiming,nio,gradinit,metainit"),
        seeds: Optional[str] = typer.Option(None, help="comma-separated integer seeds"),
        epochs: Optional[int] = typer.Option(None, help="training epochs"),
        arch: Optional[str] = typer.Option(None, help="replace the preset's models by this registered arch"),
        args: Optional[str] = typer.Option(None, "--args", help="JSON arguments of --arch, e.g. '{\"bn\": false}'"),
        train_size: Optional[int] = typer.Option(None, help="training subset size"),
        test_size: Optional[int] = typer.Option(None, help="test subset size"),
        gamma_factor: Optional[float] = typer.Option(None, help="gamma = this x the first batch's g_max"),
        nio_batch_size: Optional[int] = typer.Option(None, help="samples per rectification iteration"),
        device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
        root: Optional[str] = typer.Option(None, help="CIFAR root (default ../shared/data/cifar10_jpeg)"),
        show_config: bool = typer.Option(False, "--show-config", help="print the resolved config and exit"),
        report: Optional[str] = typer.Option(None, "--report",
                                             help="print the tables of finished run folder(s), comma-separated to merge"),
        options: dict[str, Any] | None = None,
    ) -> None:
        """Train from several initializations (Kaiming, NIO, GradInit, MetaInit) and compare them.

        A rectification flag given replaces the preset's or config's value (init.rectify); one not given keeps
        it (the defaults listed are RectifyOptions')."""
        if report is not None:
            from initscore.experiments.summary import markdown

            typer.echo(markdown(merge_reports([s for s in report.split(",") if s.strip()])))
            return
        cfg = resolve(preset, config, methods=methods, seeds=seeds, epochs=epochs, arch=arch, args=args,
                      train_size=train_size, test_size=test_size, gamma_factor=gamma_factor, device=device,
                      root=root, nio_batch_size=nio_batch_size, rectify=options)
        if show_config:
            typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=1))
            return
        if out is None:
            raise OptionsError("--out FOLDER is required to run an experiment")
        from initscore.experiments.runner import run_experiment
        from initscore.experiments.summary import markdown

        res = run_experiment(cfg, out)
        typer.echo(markdown(res.to_dict()))
        typer.echo(f"results: {Path(out) / 'results.json'}; plots: {', '.join(res.files)}")
