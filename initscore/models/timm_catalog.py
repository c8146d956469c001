"""Generate ``timm_catalog.json``: the timm architectures the torch-free registry accepts as ``timm:<name>``.

Each architecture of the installed timm (``timm.list_models()``) is built once on the meta device
(no memory, no download: ``pretrained=False``) to record its default input size, its parameter
count with the default 1000-class head, and whether its constructor takes ``img_size``, ``in_chans`` and
``drop_rate``. Entries
that cannot be built are left out and counted. The service validates specs against the shipped
file without importing torch or timm; ``tests/models/test_timm.py`` checks that it matches the
installed timm.

    python -m initscore.models.timm_catalog [--out initscore/models/timm_catalog.json]
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("timm_catalog.json")


def describe(name: str) -> dict[str, Any]:
    """One architecture's catalog entry (imports torch and timm; builds on the meta device)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    takes = inspect.signature(type(model).__init__).parameters
    return {
        "input_size": [int(v) for v in cfg.get("input_size", (3, 224, 224))],
        "params": int(sum(p.numel() for p in model.parameters())),
        "img_size": "img_size" in takes,
        "in_chans": "in_chans" in takes,
        "drop_rate": "drop_rate" in takes,
    }


def generate(names: list[str] | None = None, log: Any = print) -> dict[str, Any]:
    import timm

    names = sorted(timm.list_models()) if names is None else names
    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for i, name in enumerate(names):
        try:
            models[name] = describe(name)
        except Exception as exc:  # an architecture that does not build here is not offered
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if log is not None and (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(names)}")
    return {"timm_version": timm.__version__, "models": models, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=CATALOG)
    a = ap.parse_args(argv)
    cat = generate(log=lambda s: print(s, file=sys.stderr, flush=True))
    a.out.write_text(json.dumps(cat, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{len(cat['models'])} architectures of timm {cat['timm_version']} -> {a.out} "
          f"({len(cat['skipped'])} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
