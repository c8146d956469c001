"""initscore: zero-cost initialization and architecture scoring.

`import initscore` is cheap: torch is imported only when an engine function is
first used (PEP 562 lazy attributes). The request/result contract
(`initscore.contract`), the model catalog (`initscore.models`) and the errors
(`initscore.errors`) import without torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "gradcosine": "initscore.scores",
    "GradScores": "initscore.scores",
    "LayerScore": "initscore.scores",
    "rectify": "initscore.nio",
    "Rectification": "initscore.nio",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'initscore' has no attribute {name!r}")
    value = getattr(import_module(mod), name)
    globals()[name] = value
    return value
