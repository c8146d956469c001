"""Which timm catalog models have layers the engine's private copy must treat specially (not a timing).

Every architecture of the shipped catalog is built on the meta device (``num_classes=10``; nothing allocated) and
inspected for
  - modules whose class overrides ``nn.Module.train`` (state kept between eval-mode forwards, dropped by
    ``initscore.mode_caches`` around each forward of the scoring copy), listed by class;
  - BatchNorm subclasses with child modules (timm's norm-act layers), and how many of those models apply a
    non-Identity child (an activation or dropout the scoring copy's StatBN keeps after normalizing).

    .venv/bin/python bench/timm_scan.py [--out scan.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm
    import torch
    from torch import nn

    from initscore.mode_caches import keeps_mode_state
    from initscore.models import timm_models

    names = sorted(timm_models.catalog()["models"])
    kept: dict[str, list[str]] = defaultdict(list)
    norm_act: list[str] = []
    norm_act_real: list[str] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            with torch.device("meta"):
                m = timm.create_model(name, pretrained=False, num_classes=10)
        except Exception as exc:  # noqa: BLE001 - reported
            failed[name] = f"{type(exc).__name__}: {str(exc)[:100]}"
            continue
        classes = sorted({f"{type(x).__module__}.{type(x).__name__}" for x in m.modules() if keeps_mode_state(x)})
        if classes:
            kept[", ".join(classes)].append(name)
        bns = [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm) and any(True for _ in x.children())]
        if bns:
            norm_act.append(name)
            if any(not isinstance(c, nn.Identity) for x in bns for c in x.children()):
                norm_act_real.append(name)
    print(f"timm {timm.__version__}: {len(names)} catalog models, {len(failed)} did not build on the meta device")
    print(f"models with state kept between eval-mode forwards: {sum(map(len, kept.values()))}")
    for classes, ms in sorted(kept.items()):
        print(f"  {classes}: {len(ms)} ({', '.join(ms)})")
    print(f"models with BatchNorm subclasses that have child modules: {len(norm_act)}, "
          f"with a non-Identity child (activation or dropout): {len(norm_act_real)}")
    if a.out:
        a.out.write_text(json.dumps({"kept_state": kept, "norm_act": norm_act, "norm_act_non_identity": norm_act_real,
                                     "failed": failed}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
