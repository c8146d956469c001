"""Torch-free model registry (the timm pattern: one file per family, `register_model`).

Each family module (``initscore/models/<family>.py``) declares its architectures
with :func:`register_model`. The declaration carries everything the service needs
to validate a spec WITHOUT torch: the argument schema (:class:`Arg`) and a pure
Python parameter counter. The builder function imports its torch network lazily
(from ``<family>_net.py``), so ``import initscore.models`` never imports torch.

A model spec is JSON: ``{"arch": "resnet20", "args": {"bn": false}}``. No user
code is ever executed or unpickled: the spec only selects a registered builder and
passes validated scalar arguments.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from initscore.errors import SpecError

Scalar = int | float | bool | str


@dataclass(frozen=True)
class Arg:
    """Schema of one builder argument.

    kind: "int" | "float" | "bool" | "str". `lo`/`hi` bound numbers (inclusive),
    `choices` restricts strings, `check` is an extra validator returning an error
    message or None (for example the NAS-Bench-201 cell grammar).
    """

    kind: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    help: str = ""
    check: Callable[[Any], str | None] | None = None

    def validate(self, arch: str, name: str, value: Any) -> Any:
        where = f"{arch}: argument {name!r}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(f"{where} must be true or false, got {value!r}")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise SpecError(f"{where} must be an integer, got {value!r}")
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{where} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise SpecError(f"{where} must be finite, got {value!r}")
        elif self.kind == "str":
            if not isinstance(value, str):
                raise SpecError(f"{where} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise SpecError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        else:  # pragma: no cover - programming error in a family module
            raise TypeError(f"unknown Arg kind {self.kind!r}")
        if self.kind in ("int", "float"):
            if self.lo is not None and value < self.lo:
                raise SpecError(f"{where} must be >= {self.lo}, got {value!r}")
            if self.hi is not None and value > self.hi:
                raise SpecError(f"{where} must be <= {self.hi}, got {value!r}")
        if self.check is not None:
            msg = self.check(value)
            if msg:
                raise SpecError(f"{where}: {msg}")
        return value


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: name, family, argument schema, builder, parameter counter."""

    name: str
    family: str
    builder: Callable[..., Any]
    args: Mapping[str, Arg] = field(default_factory=dict)
    count_params: Callable[..., int] | None = None
    description: str = ""
    input_shape: tuple[int, ...] | None = None  # per-sample (C, H, W) or (D,) it expects by default

    def validate(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return the full, validated argument dict (defaults filled in) or raise SpecError."""
        args = dict(args or {})
        unknown = sorted(set(args) - set(self.args))
        if unknown:
            raise SpecError(
                f"{self.name}: unknown argument(s) {unknown}; allowed: {sorted(self.args)}"
            )
        out: dict[str, Any] = {}
        for name, spec in self.args.items():
            if name in args:
                out[name] = spec.validate(self.name, name, args[name])
            elif spec.required:
                raise SpecError(f"{self.name}: argument {name!r} is required")
            else:
                out[name] = spec.default
        return out

    def num_params(self, args: Mapping[str, Any] | None = None) -> int | None:
        """Parameter count from the pure-Python counter (no torch), or None if the family has none."""
        if self.count_params is None:
            return None
        return int(self.count_params(**self.validate(args)))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "args": {
                k: {
                    "type": a.kind,
                    "default": a.default,
                    "required": a.required,
                    **({"min": a.lo} if a.lo is not None else {}),
                    **({"max": a.hi} if a.hi is not None else {}),
                    **({"choices": list(a.choices)} if a.choices else {}),
                    **({"help": a.help} if a.help else {}),
                }
                for k, a in self.args.items()
            },
        }


_REGISTRY: dict[str, ModelEntry] = {}
# "prefix:" -> (entry for a full name or None, every full name): families too large to register one by one
_PREFIXES: dict[str, tuple[Callable[[str], ModelEntry | None], Callable[[], list[str]]]] = {}


def register_model(
    name: str,
    *,
    family: str,
    args: Mapping[str, Arg] | None = None,
    count_params: Callable[..., int] | None = None,
    description: str = "",
    input_shape: tuple[int, ...] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a builder under `name` (a family module calls it at import)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            family=family,
            builder=fn,
            args=dict(args or {}),
            count_params=count_params,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            input_shape=input_shape,
        )
        return fn

    return deco


def register_prefix(prefix: str, resolve: Callable[[str], ModelEntry | None], names: Callable[[], list[str]]) -> None:
    """Route every architecture name starting with ``prefix`` (e.g. ``"timm:"``) to ``resolve``.

    ``resolve(name)`` returns the entry or None when the family has no such architecture; ``names()``
    lists the family's full names (for listings and suggestions). Entries are made on demand, so a
    family of a thousand architectures costs nothing until one is named.
    """
    if prefix in _PREFIXES:
        raise RuntimeError(f"model prefix {prefix!r} registered twice")
    _PREFIXES[prefix] = (resolve, names)


def _load_families() -> None:
    """Import every family module of the package once (torch-free: builders import lazily)."""
    import importlib
    import pkgutil

    import initscore.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in ("registry", "timm_catalog") or info.name.startswith("_") or info.name.endswith("_net"):
            continue
        importlib.import_module(f"initscore.models.{info.name}")


_loaded = False
_load_lock = threading.RLock()  # the API validates in a thread pool: the first requests arrive together


def _registry() -> dict[str, ModelEntry]:
    """Every family imported once; a thread that arrives while another imports them waits for it (re-entrant: a
    family module may look the registry up while it is being imported)."""
    global _loaded
    if not _loaded:
        with _load_lock:
            if not _loaded:
                _load_families()
                _loaded = True
    return _REGISTRY


def get_entry(name: str) -> ModelEntry:
    reg = _registry()
    if isinstance(name, str) and name in reg:
        return reg[name]
    if isinstance(name, str):
        for prefix, (resolve, names) in _PREFIXES.items():
            if name.startswith(prefix):
                entry = resolve(name)
                if entry is not None:
                    return entry
                import difflib

                close = difflib.get_close_matches(name, names(), n=5, cutoff=0.6)
                hint = f"; did you mean {close}?" if close else ""
                raise SpecError(f"unknown architecture {name!r}{hint} (`initscore models --source "
                                f"{prefix.rstrip(':')}` lists them)")
    raise SpecError(f"unknown architecture {name!r}; known: {sorted(reg)} and the prefixes "
                    f"{sorted(_PREFIXES)}")


def sources() -> list[str]:
    """'builtin' and every registered prefix family ('timm', ...)."""
    _registry()
    return ["builtin", *(p.rstrip(":") for p in _PREFIXES)]


def list_models(source: str = "builtin", filter: str | None = None) -> list[dict[str, Any]]:
    """Describe the architectures of one source: 'builtin' (the registry's own families) or a prefix family
    such as 'timm'; ``filter`` keeps names containing it (case-insensitive)."""
    reg = _registry()
    if source == "builtin":
        names = sorted(reg)
        get = reg.__getitem__
    else:
        pair = _PREFIXES.get(f"{source}:")
        if pair is None:
            raise SpecError(f"unknown model source {source!r}; known: {sources()}")
        names, get = sorted(pair[1]()), get_entry
    f = (filter or "").lower()
    return [get(n).describe() for n in names if f in n.lower()]


def validate_spec(spec: Mapping[str, Any]) -> tuple[ModelEntry, dict[str, Any]]:
    """Validate a JSON spec ``{"arch": str, "args": {...}}``; torch-free."""
    if not isinstance(spec, Mapping) or "arch" not in spec:
        raise SpecError('a model spec is an object {"arch": NAME, "args": {...}}')
    extra = sorted(set(spec) - {"arch", "args"})
    if extra:
        raise SpecError(f"unknown model spec field(s) {extra}; allowed: arch, args")
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise SpecError("model spec 'args' must be an object")
    entry = get_entry(spec["arch"])
    return entry, entry.validate(args)


def create(name: str, **kwargs: Any) -> Any:
    """Build a freshly initialized torch module (imports torch)."""
    entry = get_entry(name)
    return entry.builder(**entry.validate(kwargs))


def _count(entry: ModelEntry, args: dict[str, Any]) -> int:
    n = entry.num_params(args)
    if n is not None:
        return n
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = entry.builder(**args)
    return int(sum(p.numel() for p in model.parameters()))


def count_params(spec: Mapping[str, Any]) -> int:
    """Parameters of the spec's model: the family's pure-Python counter, else a build on torch's meta
    device (shapes only: no memory is allocated and the global RNG is not advanced)."""
    return _count(*validate_spec(spec))


def check_cap(name: str, n: int, max_params: int | None) -> None:
    """SpecError when a model of ``n`` parameters is over the deployment's cap (None: no cap)."""
    if max_params is not None and n > max_params:
        raise SpecError(f"{name} with these arguments has {n:,} parameters, over the cap of {max_params:,}; "
                        "choose a smaller model")


def build(spec: Mapping[str, Any], *, max_params: int | None = None) -> Any:
    """Build a torch module from a JSON spec (imports torch). With ``max_params`` the parameter count is
    checked first (:func:`count_params`) and a model over the cap is refused before it is allocated."""
    entry, args = validate_spec(spec)
    if max_params is not None:
        check_cap(entry.name, _count(entry, args), max_params)
    return entry.builder(**args)
