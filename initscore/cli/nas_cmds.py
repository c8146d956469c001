"""`initscore proxies`: zero-cost NAS proxies of one architecture on one batch.

Examples:
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
    init_seed: int = typer.Option(0, help="torch seed for the initial weights"),
    list_only: bool = typer.Option(False, "--list", help="list the proxies with their definitions and exit"),
    as_json: bool = typer.Option(False, "--json", help="print {values, errors, seconds} as JSON"),
) -> None:
    """Zero-cost proxies (higher = predicted better) of one architecture on one batch."""
    from initscore import proxies

    if list_only:
        for name in proxies.PROXIES:
            typer.echo(f"{name:<11} {proxies.DESCRIPTIONS[name]}")
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

    x, y = _batch(entry, full_args, data, root, batch_size, seed)
    torch.manual_seed(init_seed)
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
        typer.echo(f"  {n:<11} {values[n]:.6g}" if n in values else f"  {n:<11} error: {errors[n]}")


def register(app: typer.Typer) -> None:
    app.command("proxies")(proxies_cmd)
