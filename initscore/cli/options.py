"""Command-line options generated from the job contract's options models, and parsing helpers (torch-free).

A verb's option flags are not written by hand: :func:`options_from` adds one flag per field of a pydantic
options model (``RectifyOptions``, ``ScoreOptions``) to a typer command, with the field's description as its
help, its allowed values and its default; a verb lists only the flags it names differently (``split`` is
``--sub-batch-split`` because ``--split`` is the data split) or handles itself. A flag not given is left out
of the request, so the model's default (or the profile's, for the fields that default by profile) applies.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Literal, Mapping, Optional, get_args, get_origin

import typer
from pydantic import BaseModel

from initscore.contract import choices
from initscore.errors import OptionsError

OPTIONS = "options"  # the keyword a decorated command receives the given option values in


def csv_list(text: str | None, what: str, cast: Any = str) -> list[Any] | None:
    """``"a, b"`` -> ``["a", "b"]`` (None stays None); ``what`` names the option in the one-line error."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise OptionsError(f"--{what} must be a comma-separated list, got {text!r}")
    try:
        return [cast(s) for s in items]
    except ValueError:
        raise OptionsError(f"--{what} must be a comma-separated list of integers, got {text!r}") from None


def _cli_type(annotation: Any) -> tuple[type, bool]:
    """(the type typer parses a field's flag as, whether the field is a list given as "a,b")."""
    todo, found = [annotation], []
    while todo:
        t = todo.pop(0)
        if t is type(None):
            continue
        origin = get_origin(t)
        if origin is list:
            return str, True
        if origin is None and isinstance(t, type):
            found.append(t)
        elif origin is Literal:
            found.append(type(get_args(t)[0]))
        else:
            todo.extend(get_args(t))
    kind = found[0] if found else str
    return (kind if kind in (bool, int, float) else str), False


def _help(model: type[BaseModel], name: str) -> str:
    f = model.model_fields[name]
    parts = [f.description or name.replace("_", " ")]
    allowed = choices(model, name)
    if allowed:
        parts.append("one of: " + " | ".join(map(str, allowed)))
    if _cli_type(f.annotation)[1]:
        parts.append("comma-separated")
    default = f.get_default(call_default_factory=True)
    if default not in (None, [], {}):
        parts.append(f"default: {default}")
    return "; ".join(parts)


def options_from(model: type[BaseModel], *, flags: Mapping[str, str] | None = None,
                 skip: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command so it takes one flag per field of ``model`` and receives the values given on the
    command line as ``options={field: value}`` (flags not given are absent; list fields are split at commas).

    flags: field -> flag name where it is not ``--field-name``; skip: fields the command declares itself.
    The command must have a keyword parameter ``options``; the generated flags follow its own parameters."""
    names = {n: (flags or {}).get(n, "--" + n.replace("_", "-")) for n in model.model_fields if n not in skip}

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)  # typer reads the annotations of the signature set below
        own = [p for p in sig.parameters.values() if p.name != OPTIONS]
        taken = {p.name for p in own}
        generated: dict[str, tuple[str, bool]] = {}  # parameter name -> (field, is a list)
        params = list(own)
        for field, flag in names.items():
            kind, is_list = _cli_type(model.model_fields[field].annotation)
            pname = field if field not in taken else f"opt_{field}"
            generated[pname] = (field, is_list)
            params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                                            default=typer.Option(None, flag, help=_help(model, field))))

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for pname, (field, is_list) in generated.items():
                value = kwargs.pop(pname, None)
                if value is not None:
                    given[field] = csv_list(value, names[field].lstrip("-")) if is_list else value
            return fn(**kwargs, **{OPTIONS: given})

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {}  # the signature's annotations are the ones typer uses
        return command

    return deco
