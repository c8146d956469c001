"""`initscore models`: the architectures a spec can name (torch-free)."""
from __future__ import annotations

import json
from typing import Optional

import typer


def models_cmd(
    source: str = typer.Option("builtin", "--source", help="builtin (initscore's own families) or timm"),
    filter: Optional[str] = typer.Option(None, "--filter", help="keep names containing this text"),
    as_json: bool = typer.Option(False, "--json", help="print the argument schemas as JSON"),
) -> None:
    """List registered architectures (the names `--arch` and model specs accept) and their arguments."""
    from initscore.models import list_models

    rows = list_models(source, filter)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(rows)} {source} architecture(s)" + (f" matching {filter!r}" if filter else ""))
    for c in ("name", "input", "arguments", "description"):
        t.add_column(c)
    for r in rows:
        shape = "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-"
        t.add_row(r["name"], shape, ", ".join(r["args"]), r["description"])
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
