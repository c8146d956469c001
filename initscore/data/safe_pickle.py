"""A restricted unpickler for the CIFAR "python version" batch files, and nothing else.

The CIFAR-10/100 python batches are pickles (a dict with a uint8 ``data`` array and a
label list). Pickle can execute arbitrary code, so this loader resolves ONLY the few
globals those files need to rebuild a numpy array and refuses everything else:

    numpy.core.multiarray._reconstruct / numpy._core.multiarray._reconstruct,
    numpy.ndarray, numpy.dtype, _codecs.encode (protocol-2 bytes from Python 3).

The result is then type-checked (dict with the expected keys, a uint8 array, integer
labels). This module lives in the engine only; the service, worker and client never
unpickle anything (tests/test_safety.py).
"""
from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from initscore.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}

MAX_BATCH_BYTES = 1 << 30


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name}: a CIFAR batch file holds only numpy arrays and lists"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("refusing a pickle with persistent ids: not a CIFAR batch file")


def load_batch(path: str) -> dict[str, Any]:
    """Read one CIFAR python batch: returns a dict with str keys (bytes keys decoded)."""
    with open(path, "rb") as f:
        blob = f.read(MAX_BATCH_BYTES + 1)
    if len(blob) > MAX_BATCH_BYTES:
        raise DataError(f"{path}: larger than {MAX_BATCH_BYTES} bytes, not a CIFAR batch file")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # corrupt or foreign pickle
        raise DataError(f"{path}: not a readable CIFAR batch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR batch file holds a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
