"""Exceptions raised by the engine. Torch-free so the service and client can catch them.

Every error a user can cause derives from `InitscoreError`; the command line
prints `str(err)` on one line and the API maps `status` to an HTTP code.
"""
from __future__ import annotations


class InitscoreError(Exception):
    """Base class of all user-facing errors. `status` is the HTTP status the API uses."""

    status: int = 400
    title: str = "Invalid request"


class SpecError(InitscoreError, ValueError):
    """A model spec is wrong: unknown architecture, unknown or out-of-range argument."""

    status = 422
    title = "Invalid model spec"


class DataError(InitscoreError, ValueError):
    """A data reference is wrong: missing path, wrong shapes, labels out of range, root not allowed."""

    status = 422
    title = "Invalid data reference"


class OptionsError(InitscoreError, ValueError):
    """Score or rectify options are inconsistent (for example more sub-batches than samples)."""

    status = 422
    title = "Invalid options"


class NonFiniteError(InitscoreError, ArithmeticError):
    """A gradient or score is NaN/inf. `tensor` names the first offending parameter tensor."""

    status = 422
    title = "Non-finite gradient"

    def __init__(self, message: str, tensor: str | None = None) -> None:
        super().__init__(message)
        self.tensor = tensor


class ResourceError(InitscoreError, MemoryError):
    """Out of (GPU or CPU) memory even after chunking; suggests a smaller batch."""

    status = 507
    title = "Out of memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means the process ran out of memory, recognised without importing torch.

    True for ``MemoryError`` (CPU, and :class:`ResourceError`), ``torch.OutOfMemoryError`` (matched by
    name) and the ``RuntimeError("CUDA out of memory ...")`` of older torch versions.
    """
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
