"""`initscore proxies` (one architecture, every proxy) and `initscore search` (the k best of many).

Examples:
  initscore search --space nb201 --n 1000 --k 5          # the 5 best of 1,000 sampled cells by `ensemble`
  initscore search --cells my_cells.txt --k 3 --proxy synflow
  initscore search --space nb201 --n 15625 --k 10 --resume all.ckpt   # run again after a crash: continues
  initscore search --space nb201 --n 1000 --print-request > req.json && initscore submit --file req.json
  initscore proxies --list
  initscore proxies --arch nb201 --cell '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|'
  initscore proxies --arch resnet20 --data cifar10 --names synflow,snip,naswot --json
"""
from __future__ import annotations

import json
from typing import Any, Optional

import typer

from initscore.errors import OptionsError, SpecError


def _spec(arch: str, args: str, cell: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--args must be a JSON object, e.g. '{{\"num_classes\": 10}}' ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise SpecError("--args must be a JSON object")
    if cell is not None:
        parsed["cell"] = cell
    return {"arch": arch, "args": parsed}


def _data_ref(spec: dict[str, Any], data: str, root: str | None, batch_size: int, seed: int,
              fresh: bool = False) -> dict[str, Any]:
    """The data reference of these verbs (torch-free): synthetic images shaped for `spec`, or a seeded subset of
    max(batch_size, 1024) samples of a dataset (its default local copy unless --root), whose root must exist."""
    from initscore.cli.engine_cmds import _data_ref as engine_ref
    from initscore.dataref import validate_ref

    ref = engine_ref(spec, data, root, "train", batch_size, seed, None if data == "synthetic" else max(batch_size, 1024))
    if fresh:
        ref["fresh_per_arch"] = True
    validate_ref(ref)  # parses (a bad field is a one-line DataError naming it) and checks the root exists, torch-free
    return ref


def proxies_cmd(
    arch: Optional[str] = typer.Option(None, help="registered architecture, e.g. nb201 or resnet20"),
    args: str = typer.Option("{}", help="JSON object of architecture arguments"),
    cell: Optional[str] = typer.Option(None, help="NAS-Bench-201 cell string (sets args.cell)"),
    names: str = typer.Option("all", help="comma-separated proxy names, or 'all'"),
    data: str = typer.Option("synthetic", help="data kind: synthetic, cifar10, ... (contract DataRef.kind)"),
    root: Optional[str] = typer.Option(None, help="data root (default for cifar10: ../shared/data/cifar10_jpeg)"),
    batch_size: int = typer.Option(64, help="samples in the batch"),
    seed: int = typer.Option(0, help="which samples"),
    init_seed: int = typer.Option(0, help="request seed of the initial weights (torch seed = spec_seed(spec, init_seed), as every path uses)"),
    list_only: bool = typer.Option(False, "--list", help="list the proxies with their definitions and exit"),
    as_json: bool = typer.Option(False, "--json", help="print {values, errors, seconds} as JSON"),
) -> None:
    """Zero-cost proxies (higher = predicted better) of one architecture on one batch (a score job with
    options.proxies, run by initscore.jobs.run_job as the service runs it)."""
    from initscore import proxies

    if list_only:
        for name in proxies.PROXIES:
            typer.echo(f"{name:<16} {proxies.DESCRIPTIONS[name]}")
        return
    if arch is None:
        raise SpecError("--arch is required (or use --list)")
    wanted = list(proxies.PROXIES) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in proxies.PROXIES]
    if unknown or not wanted:
        raise OptionsError(f"unknown proxy {unknown}; known: {list(proxies.PROXIES)}")
    from initscore.cli.engine_cmds import _request
    from initscore.models import validate_spec

    spec = _spec(arch, args, cell)
    _, full_args = validate_spec(spec)
    ref = _data_ref(spec, data, root, batch_size, seed)
    request = _request("score", spec, ref, {"proxies": wanted, "seed": init_seed})

    from initscore.jobs import run_job

    result, _, _ = run_job(request)
    values, errors, seconds = dict(result.proxies), dict(result.proxy_errors), result.seconds
    if as_json:
        typer.echo(json.dumps({"arch": arch, "args": full_args, "values": values, "errors": errors, "seconds": seconds}, indent=2))
        return
    n = min(batch_size, ref.get("limit") or batch_size)
    typer.echo(f"{arch} {json.dumps(full_args, sort_keys=True)} on {data} ({n} samples), {seconds:.2f}s")
    for name in wanted:
        typer.echo(f"  {name:<16} {values[name]:.6g}" if name in values else f"  {name:<16} error: {errors[name]}")


def _read_cells(path: str) -> list[dict[str, Any]]:
    """Specs from a file: one NB201 cell string, or one JSON model spec, per line (# comments, blanks skipped)."""
    import pathlib

    p = pathlib.Path(path)
    if not p.is_file():
        raise OptionsError(f"--cells: no such file {path!r}")
    specs: list[dict[str, Any]] = []
    for k, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                spec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(f"--cells line {k}: not a JSON spec ({exc.msg})") from None
        else:
            spec = {"arch": "nb201", "args": {"cell": line}}
        from initscore.errors import InitscoreError
        from initscore.models import validate_spec

        try:
            validate_spec(spec)
        except InitscoreError as exc:
            raise SpecError(f"--cells line {k}: {exc}") from None
        specs.append(spec)
    if not specs:
        raise OptionsError(f"--cells: {path!r} lists no architecture")
    return specs


_FLAGS = {"k": "--k", "proxy": "--proxy", "seed": "--seed", "sample.n": "--n", "sample.sample_seed": "--sample-seed",
          "sample.space": "--space", "cells": "--cells", "models": "--cells", "data.batch_size": "--batch-size",
          "data.root": "--root", "data.kind": "--data", "data.seed": "--data-seed"}


def search_request(*, specs: list[dict[str, Any]] | None, space: str | None, n: int, sample_seed: int, k: int,
                   proxy: str, data: str, root: str | None, batch_size: int, fresh_batch: bool, seed: int,
                   data_seed: int | None = None) -> dict[str, Any]:
    """The contract SearchRequest of `initscore search` (what `initscore submit --file` would send), validated
    torch-free; a problem is an OptionsError naming the flag."""
    from pydantic import TypeAdapter, ValidationError

    from initscore import search
    from initscore.contract import JobRequest

    req: dict[str, Any] = {"kind": "search", "k": k, "proxy": proxy, "seed": seed}
    if specs is not None:
        plain = all(set(s) == {"arch", "args"} and s["arch"] == "nb201" and set(s["args"]) == {"cell"} for s in specs)
        if plain:
            req["cells"] = [s["args"]["cell"] for s in specs]
        else:
            req["models"] = specs
        first = specs[0]
    else:
        if space != "nb201":
            raise OptionsError(f"--space: unknown search space {space!r}; known: ['nb201']")
        req["sample"] = {"space": space, "n": n, "sample_seed": sample_seed}
        first = {"arch": "nb201", "args": {"cell": search.nb201_cell(0)}}
    req["data"] = _data_ref(first, data, root, batch_size, seed if data_seed is None else data_seed, fresh_batch)
    try:
        parsed = TypeAdapter(JobRequest).validate_python(req)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"] if p != "search")
        msg = str(e["msg"]).removeprefix("Value error, ")
        raise OptionsError(f"{_FLAGS.get(loc, loc or 'request')}: {msg}") from None
    return parsed.model_dump(mode="json", exclude_none=True)


def search_cmd(
    space: Optional[str] = typer.Option(None, help="search space to sample: nb201"),
    n: int = typer.Option(1000, help="architectures to sample from --space"),
    k: int = typer.Option(5, help="how many of the best to print"),
    cells: Optional[str] = typer.Option(None, help="file of architectures (one NB201 cell string or JSON spec per line) instead of --space"),
    proxy: str = typer.Option("ensemble", help="score to rank by (a proxy name, or az_nas for AZ-NAS's rank aggregation)"),
    data: str = typer.Option("cifar10", help="data kind: cifar10 or synthetic"),
    root: Optional[str] = typer.Option(None, help="data root (default for cifar10: ../shared/data/cifar10_jpeg)"),
    batch_size: int = typer.Option(64, help="samples per batch"),
    fresh_batch: bool = typer.Option(False, "--fresh-batch", help="draw a fresh seeded batch per architecture"),
    seed: int = typer.Option(0, help="weights and batch seed (scores are deterministic per spec and seed)"),
    data_seed: Optional[int] = typer.Option(None, help="which samples form the batch (default: --seed)"),
    sample_seed: int = typer.Option(0, help="which cells --space samples (random.Random(seed))"),
    resume: Optional[str] = typer.Option(None, "--resume", help="checkpoint file: saved every few architectures; run "
                                         "the same command again to continue after the last saved one"),
    print_request: bool = typer.Option(False, "--print-request", help="print the search job request (for "
                                       "`initscore submit --file`) and exit"),
    as_json: bool = typer.Option(False, "--json", help="print the result (the search job's result) as JSON"),
) -> None:
    """The k best architectures of a sample (or a file) by a zero-cost score, higher = better."""
    import sys

    if (space is None) == (cells is None):
        raise OptionsError("give exactly one of --space nb201 or --cells FILE")
    specs = _read_cells(cells) if cells is not None else None
    request = search_request(specs=specs, space=space, n=n, sample_seed=sample_seed, k=k, proxy=proxy, data=data,
                             root=root, batch_size=batch_size, fresh_batch=fresh_batch, seed=seed,
                             data_seed=data_seed)
    if print_request:
        typer.echo(json.dumps(request, indent=2))
        return
    from initscore import search
    from initscore.jobs import run_job

    def progress(done: int, total: int, metrics: dict[str, Any]) -> None:
        if not as_json and (done % 50 == 0 or done == total):
            lead = f", best {metrics['best_score']:.4g}" if metrics.get("best_score") is not None else ""
            print(f"  [{done}/{total}]{lead}", file=sys.stderr, flush=True)

    checkpoint = search.FileCheckpoint(resume) if resume else None
    res, _, _ = run_job(request, progress=progress, checkpoint=checkpoint)
    if as_json:
        typer.echo(res.model_dump_json(indent=2))
        return
    extra = f"; {res.resumed} taken from {resume}" if res.resumed else ""
    typer.echo(f"top {k} of {res.total} by {proxy} ({res.failed} not scorable{extra}), {res.seconds:.1f}s")
    for rank, c in enumerate(res.top, 1):
        score = f"{c.score:.6g}" if c.score is not None else "unscored"
        what = c.model.args.get("cell") if c.model.arch == "nb201" else c.model.model_dump_json()
        typer.echo(f"{rank:>3}. {score:>12}  {what}")


def register(app: typer.Typer) -> None:
    app.command("proxies")(proxies_cmd)
    app.command("search")(search_cmd)
