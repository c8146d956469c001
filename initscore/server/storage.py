"""Content-addressed artifact store shared by the API and the workers.

Objects (result JSON, safetensors weights, PNG plots) are stored under their
sha256: ``<root>/objects/<aa>/<sha256>``. Small named documents (the durable copy
of every job record, and the request-hash -> result index used to answer an
identical request) live under ``<root>/refs/<namespace>/<name>.json``.

Every write goes to a temporary file in the same directory, is fsync'ed and then
``os.replace``d into place, so a reader never sees a partial file, and a full or
read-only disk surfaces as :class:`StoreError` with nothing half-written left in
the store. :class:`ArtifactStore` is the interface; an S3-compatible store would
implement the same methods (objects keyed by sha256, refs as small keys).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import IO, Any, Iterator, Protocol, runtime_checkable

from initscore.files import synced_temp, write_atomically

_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class StoreError(OSError):
    """The artifact store could not write or read (disk full, read-only, missing object)."""


@runtime_checkable
class ArtifactStore(Protocol):
    def put_bytes(self, data: bytes) -> str: ...
    def put_json(self, obj: Any) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> IO[bytes]: ...
    def size(self, sha256: str) -> int: ...
    def put_ref(self, namespace: str, name: str, doc: dict[str, Any]) -> None: ...
    def get_ref(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def delete_ref(self, namespace: str, name: str) -> None: ...
    def writable(self) -> bool: ...
    def probe(self) -> str | None: ...


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces): equal objects -> equal sha256."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA.match(sha256):
        raise StoreError(f"not a sha256 digest: {sha256!r}")
    return sha256


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise StoreError(f"bad ref name {name!r}")
    return name


class FileArtifactStore:
    """:class:`ArtifactStore` on a local (or shared network) filesystem path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------ helpers
    def _obj_path(self, sha256: str) -> Path:
        _check_sha(sha256)
        return self.root / "objects" / sha256[:2] / sha256

    def _ref_path(self, namespace: str, name: str) -> Path:
        return self.root / "refs" / _check_name(namespace) / f"{_check_name(name)}.json"

    def _atomic_write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)
        except OSError as exc:
            raise StoreError(f"artifact store at {self.root} cannot write {path.name}: {exc.strerror or exc}") from exc

    # ------------------------------------------------------------ objects
    def put_bytes(self, data: bytes) -> str:
        """Store `data` under its sha256 (idempotent) and return the digest."""
        sha = hashlib.sha256(data).hexdigest()
        path = self._obj_path(sha)
        if not path.exists():
            self._atomic_write(path, data)
        return sha

    def put_json(self, obj: Any) -> str:
        return self.put_bytes(canonical_json(obj))

    def exists(self, sha256: str) -> bool:
        try:
            return self._obj_path(sha256).is_file()
        except StoreError:
            return False

    def get(self, sha256: str) -> bytes:
        try:
            return self._obj_path(sha256).read_bytes()
        except OSError as exc:
            raise StoreError(f"artifact {sha256[:12]} unavailable: {exc.strerror or exc}") from exc

    def get_json(self, sha256: str) -> Any:
        return json.loads(self.get(sha256))

    def open(self, sha256: str) -> IO[bytes]:
        try:
            return open(self._obj_path(sha256), "rb")
        except OSError as exc:
            raise StoreError(f"artifact {sha256[:12]} unavailable: {exc.strerror or exc}") from exc

    def size(self, sha256: str) -> int:
        try:
            return self._obj_path(sha256).stat().st_size
        except OSError as exc:
            raise StoreError(f"artifact {sha256[:12]} unavailable: {exc.strerror or exc}") from exc

    def iter_chunks(self, sha256: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with self.open(sha256) as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    return
                yield b

    # ------------------------------------------------------------ refs
    def put_ref(self, namespace: str, name: str, doc: dict[str, Any]) -> None:
        self._atomic_write(self._ref_path(namespace, name), canonical_json(doc))

    def get_ref(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            path = self._ref_path(namespace, name)
        except StoreError:
            return None
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"ref {namespace}/{name} unreadable: {exc}") from exc

    def delete_ref(self, namespace: str, name: str) -> None:
        """Remove a ref if it exists (a search job's checkpoint once the job has finished)."""
        try:
            self._ref_path(namespace, name).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"ref {namespace}/{name} cannot be removed: {exc.strerror or exc}") from exc

    def writable(self) -> bool:
        """True if :meth:`probe` finds nothing wrong."""
        return self.probe() is None

    def probe(self) -> str | None:
        """Write, fsync and remove a 4 KiB probe file; None if that worked, else why not (used by /readyz).

        The probe holds data, not just an inode: an empty file can still be created on a full disk.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with synced_temp(self.root, ".probe-", b"\0" * 4096):
                return None
        except OSError as exc:
            return f"cannot write to the artifact store: {exc.strerror or type(exc).__name__}"
