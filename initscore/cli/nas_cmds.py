"""`initscore proxies` (one architecture, every proxy) and `initscore search` (the k best of many).

Examples:
  initscore search --space nb201 --n 1000 --k 5          # the 5 best of 1,000 sampled cells by `ensemble`
  initscore search --cells my_cells.txt --k 3 --proxy synflow
  initscore proxies --list
  initscore proxies --arch nb201 --cell '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|'
  initscore proxies --arch resnet20 --data cifar10 --names synflow,snip,naswot --json
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Optional

import typer

from initscore.errors import DataError, OptionsError, SpecError


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


def _batch(entry, full_args: dict[str, Any], data: str, root: str | None, batch_size: int, seed: int):
    from initscore import data as data_mod
    from initscore.contract import DataRef

    ref: dict[str, Any] = {"kind": data, "split": "train", "batch_size": batch_size, "seed": seed}
    if data == "synthetic":
        shape = entry.input_shape or (3, 32, 32)
        if "in_features" in full_args and math.prod(shape) != int(full_args["in_features"]):
            shape = (int(full_args["in_features"]),)
        ref["shape"] = shape
        ref["num_classes"] = int(full_args.get("num_classes", 10))
    else:
        if root is None:
            default = {"cifar10": data_mod.default_cifar10_root}.get(data)
            root = default() if default else None
            if root is None:
                raise DataError(f"data kind {data!r} needs --root (no default copy found)")
        ref["root"] = root
        ref["limit"] = max(batch_size, 1024)
    try:
        dref = DataRef(**ref)
    except Exception as exc:  # pydantic ValidationError -> one line
        lines = str(exc).splitlines()
        raise DataError(f"bad data reference: {lines[-2].strip() if len(lines) > 1 else lines[0]}") from None
    td = data_mod.load(dref)
    return td.batch(min(batch_size, len(td)), seed=seed)


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
    """Zero-cost proxies (higher = predicted better) of one architecture on one batch."""
    from initscore import proxies

    if list_only:
        for name in proxies.PROXIES:
            typer.echo(f"{name:<16} {proxies.DESCRIPTIONS[name]}")
        return
    if arch is None:
        raise SpecError("--arch is required (or use --list)")
    if batch_size < 2:
        raise OptionsError(f"--batch-size must be >= 2, got {batch_size}")
    wanted = list(proxies.PROXIES) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in proxies.PROXIES]
    if unknown or not wanted:
        raise OptionsError(f"unknown proxy {unknown}; known: {list(proxies.PROXIES)}")
    from initscore.models import validate_spec

    spec = _spec(arch, args, cell)
    entry, full_args = validate_spec(spec)

    import torch

    from initscore.models import build

    from initscore.proxies.batch import spec_seed

    x, y = _batch(entry, full_args, data, root, batch_size, seed)
    torch.manual_seed(spec_seed(spec, init_seed))
    model = build(spec)
    if entry.family in ("mlp", "lipschitz_mlp"):
        x = x.reshape(x.shape[0], -1)
    t0 = time.perf_counter()
    values, errors = proxies.compute_many(wanted, model, (x, y))
    seconds = time.perf_counter() - t0
    if as_json:
        typer.echo(json.dumps({"arch": arch, "args": full_args, "values": values, "errors": errors, "seconds": seconds}, indent=2))
        return
    typer.echo(f"{arch} {json.dumps(full_args, sort_keys=True)} on {data} ({len(x)} samples), {seconds:.2f}s")
    for n in wanted:
        typer.echo(f"  {n:<16} {values[n]:.6g}" if n in values else f"  {n:<16} error: {errors[n]}")


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
    sample_seed: int = typer.Option(0, help="which cells --space samples (random.Random(seed))"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """The k best architectures of a sample (or a file) by a zero-cost score, higher = better."""
    import sys

    from initscore import proxies, search

    if (space is None) == (cells is None):
        raise OptionsError("give exactly one of --space nb201 or --cells FILE")
    if proxy not in proxies.PROXIES and proxy not in search.SET_LEVEL:
        raise OptionsError(f"unknown proxy {proxy!r}; known: {[*proxies.PROXIES, *search.SET_LEVEL]}")
    if batch_size < 2:
        raise OptionsError(f"--batch-size must be >= 2, got {batch_size}")
    if cells is not None:
        specs = _read_cells(cells)
    else:
        if space != "nb201":
            raise OptionsError(f"--space: unknown search space {space!r}; known: ['nb201']")
        specs = search.nb201_sample(n, sample_seed)
    if not 1 <= k <= len(specs):
        raise OptionsError(f"--k must be in 1..{len(specs)} (the number of architectures), got {k}")
    from initscore.models import validate_spec

    entry, full_args = validate_spec(specs[0])
    x, y = _batch(entry, full_args, data, root, max(batch_size, 2), seed)
    if fresh_batch:
        ref_batch = _batch(entry, full_args, data, root, max(batch_size, 1024) if data != "synthetic" else batch_size, seed)
        pool_x, pool_y = ref_batch

        def batch_of(s: int):
            import torch

            g = torch.Generator().manual_seed(s)
            idx = torch.randperm(len(pool_x), generator=g)[:batch_size]
            return pool_x[idx], pool_y[idx]
        batch: Any = batch_of
    else:
        batch = (x, y)

    def progress(done: int, total: int, best) -> None:
        if not as_json and (done % 50 == 0 or done == total):
            lead = f", best {best[0].score:.4g}" if best else ""
            print(f"  [{done}/{total}]{lead}", file=sys.stderr, flush=True)

    res = search.top_k(specs, batch, k, proxy, seed=seed, progress=progress)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    typer.echo(f"top {k} of {res.total} by {proxy} ({res.failed} not scorable), {res.seconds:.1f}s")
    for rank, c in enumerate(res.top, 1):
        score = f"{c.score:.6g}" if math.isfinite(c.score) else "unscored"
        what = c.spec["args"].get("cell") if c.spec.get("arch") == "nb201" else json.dumps(c.spec, sort_keys=True)
        typer.echo(f"{rank:>3}. {score:>12}  {what}")


def register(app: typer.Typer) -> None:
    app.command("proxies")(proxies_cmd)
    app.command("search")(search_cmd)
