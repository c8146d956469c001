"""Users' own networks as ONNX files: torch-free checks (:mod:`.check`) and the torch conversion (:mod:`.convert`).

``check(data)`` is what the API runs on an upload; ``from_bytes(data)`` (imports torch) gives an
:class:`~initscore.onnx_model.convert.OnnxNet` whose parameters are the file's initializers.
"""
from __future__ import annotations

from typing import Any

from initscore.onnx_model.check import SUPPORTED_OPS, OnnxSummary, check

__all__ = ["SUPPORTED_OPS", "OnnxSummary", "check", "from_bytes", "rectified_onnx"]


def __getattr__(name: str) -> Any:
    if name in ("from_bytes", "rectified_onnx", "OnnxNet"):
        from initscore.onnx_model import convert

        return getattr(convert, name)
    raise AttributeError(name)
