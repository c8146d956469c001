"""The `initscore` command line (typer + rich).

Verb groups live in their own modules, each exposing `register(app)`:
  engine_cmds       score, rectify, demo          (in-process engine)
  remote_cmds       submit, status, wait, fetch, serve, worker (service/client)
  experiment_cmds   experiment                    (training comparisons)
  propagation_cmds  propagation, lipschitz        (signal propagation)
  nas_cmds          proxies, search               (zero-cost NAS proxies, top-k search)
  models_cmds       models                        (registered architectures, timm catalog)

Any `InitscoreError` (bad spec, bad data ref, bad options) is printed as ONE
line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import importlib
import sys

import typer

from initscore.errors import InitscoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Zero-cost initialization and architecture scoring.")

_GROUPS = ("engine_cmds", "remote_cmds", "experiment_cmds", "propagation_cmds", "nas_cmds", "models_cmds")
for _name in _GROUPS:
    try:
        _mod = importlib.import_module(f"initscore.cli.{_name}")
    except ModuleNotFoundError as exc:  # a group not written yet
        if exc.name != f"initscore.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit's code instead of raising it
    except InitscoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors (typer may vendor its own click: duck-type them)
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
