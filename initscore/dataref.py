"""Torch-free checks of a data reference: parsing, root confinement, existence.

The service calls :func:`validate_ref` before it queues a job, so a bad root is
rejected with a 422 without importing torch; :mod:`initscore.data` calls the same
functions again when it actually reads the files (and confines every file it opens).

Confinement rule: with ``allowed_roots`` given, ``os.path.realpath(root)`` (symlinks
and ``..`` resolved) must equal or lie under ``os.path.realpath`` of one allowed root.
A relative root is then looked up under each allowed root in turn (the first where
it exists), never against the process's working directory; a path inside the roots
that is missing is "does not exist", one that resolves outside is "outside".
``allowed_roots=None`` means no confinement (library and CLI use); an empty list
allows no path at all (only ``synthetic`` data).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from initscore.contract import DataRef
from initscore.errors import DataError

__all__ = [
    "DataRef",
    "parse_ref",
    "resolve_root",
    "confine",
    "validate_ref",
    "default_cifar10_root",
    "default_mnist_root",
    "default_fashion_mnist_root",
    "default_root",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def parse_ref(ref: DataRef | Mapping[str, Any]) -> DataRef:
    """A DataRef from a DataRef or a dict; pydantic errors become one-line DataErrors."""
    if isinstance(ref, DataRef):
        return ref
    if not isinstance(ref, Mapping):
        raise DataError(f"a data reference is an object like {{'kind': 'cifar10', 'root': PATH}}, got {type(ref).__name__}")
    try:
        return DataRef.model_validate(dict(ref))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "data"
        raise DataError(f"data reference: {loc}: {first.get('msg', 'invalid')}") from None


def _real_roots(allowed_roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    return [os.path.realpath(os.fspath(r)) for r in allowed_roots]


def confine(path: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]] | None) -> str:
    """Return realpath(path); raise DataError if it is not under one of the allowed roots."""
    real = os.path.realpath(os.fspath(path))
    if allowed_roots is None:
        return real
    for root in _real_roots(allowed_roots):
        if real == root or os.path.commonpath([real, root]) == root:
            return real
    raise DataError(
        f"data path {os.fspath(path)!r} is outside the allowed dataset roots; "
        "use a path under one of the configured roots"
    )


def resolve_root(ref: DataRef, allowed_roots: Iterable[str | os.PathLike[str]] | None = None) -> str | None:
    """The real path of ``ref.root`` after confinement and an existence check (None for synthetic)."""
    if ref.kind == "synthetic":
        return None
    assert ref.root is not None  # DataRef's validator guarantees it for non-synthetic kinds
    if "\x00" in ref.root:
        raise DataError("data root contains a NUL byte")
    raw = os.path.expanduser(ref.root)
    if allowed_roots is not None and not os.path.isabs(raw):
        return _under_roots(ref.root, raw, allowed_roots)
    real = confine(raw, allowed_roots)
    if not os.path.exists(real):
        raise DataError(f"data root {ref.root!r} does not exist")
    return real


def _under_roots(shown: str, rel: str, allowed_roots: Iterable[str | os.PathLike[str]]) -> str:
    """A relative root on the service path: the first allowed root under which it exists (never the cwd)."""
    inside = False
    for root in _real_roots(allowed_roots):
        real = os.path.realpath(os.path.join(root, rel))
        if real != root and os.path.commonpath([real, root]) != root:
            continue
        inside = True
        if os.path.exists(real):
            return real
    if not inside:
        raise DataError(f"data path {shown!r} is outside the allowed dataset roots; use a path under one of the configured roots")
    raise DataError(f"data root {shown!r} does not exist under the allowed dataset roots")


def validate_ref(
    ref: DataRef | Mapping[str, Any], allowed_roots: Iterable[str | os.PathLike[str]] | None = None
) -> DataRef:
    """Parse ``ref`` and check root confinement and existence without reading data (torch-free)."""
    parsed = parse_ref(ref)
    resolve_root(parsed, allowed_roots)
    return parsed


def _existing(path: Path) -> str | None:
    return str(path) if path.is_dir() else None


def default_cifar10_root() -> str | None:
    """$INITSCORE_DATA_ROOT if set, else <repo>/../shared/data/cifar10_jpeg if present, else None."""
    env = os.environ.get("INITSCORE_DATA_ROOT")
    if env:
        return env
    return _existing(SHARED_DATA / "cifar10_jpeg")


def default_mnist_root() -> str | None:
    """<repo>/../shared/data/mnist_test (MNIST test split only) if present, else None."""
    return _existing(SHARED_DATA / "mnist_test")


def default_fashion_mnist_root() -> str | None:
    """Debian's dataset-fashion-mnist install directory if present, else None."""
    return _existing(DEBIAN_FASHION_MNIST)


def default_root(kind: str) -> str | None:
    """The default local copy for a data kind (cifar10, mnist, fashion-mnist), or None if none is found."""
    finder = {"cifar10": default_cifar10_root, "mnist": default_mnist_root,
              "fashion-mnist": default_fashion_mnist_root}.get(kind)
    return finder() if finder else None
