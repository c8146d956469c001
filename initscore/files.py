"""Durable file writes, torch-free: a synced temporary file, and a file replaced atomically through one.

Used by the artifact store (initscore.server.storage) and the search checkpoint file (initscore.search).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def synced_temp(directory: str | os.PathLike[str], prefix: str, data: bytes) -> Iterator[str]:
    """A new file in the existing ``directory`` holding ``data``, flushed and fsynced; yields its path and removes
    it afterwards unless the caller has moved it (``os.replace``)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def write_atomically(path: str | os.PathLike[str], data: bytes, prefix: str = ".tmp-") -> None:
    """Replace ``path`` by a file holding ``data`` (synced temporary file in the same directory, then
    ``os.replace``): a crash leaves the old file or the new one, never a part. The directory must exist."""
    path = Path(path)
    with synced_temp(path.parent, prefix, data) as tmp:
        os.replace(tmp, path)
