"""Parsing helpers for command-line option values shared by the verb modules (torch-free)."""
from __future__ import annotations

from typing import Any

from initscore.errors import OptionsError


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
