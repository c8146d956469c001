"""timm's image models as ``timm:<name>`` (torch-free declaration).

Names and defaults come from ``timm_catalog.json``, generated from the installed timm by
``python -m initscore.models.timm_catalog`` and shipped with the package, so the API validates a
spec without importing torch or timm. Models are built with ``pretrained=False`` (timm's own
initialization; nothing is downloaded). Arguments:

  num_classes   size of the classifier output (default 1000)
  img_size      input side, for architectures whose constructor takes it (ViT, DeiT, Swin, ...);
                omitted: the architecture's default
  in_chans      input channels, for architectures whose constructor takes it (1 to 64; omitted: the default)
  drop_rate     classifier dropout in [0, 1], for architectures whose constructor takes it (omitted: the default)

There is no pure-Python parameter counter for these: a cap is enforced by building the model on
the meta device first (:func:`initscore.models.registry.count_params`).
"""
from __future__ import annotations

import functools
import json
from typing import Any

from initscore.models.registry import Arg, ModelEntry, register_prefix

PREFIX = "timm:"


@functools.cache
def catalog() -> dict[str, Any]:
    """The shipped catalog: {"timm_version", "models": {name: {"input_size", "params", "img_size"}}, "skipped"}."""
    from initscore.models.timm_catalog import CATALOG

    if not CATALOG.is_file():
        return {"timm_version": None, "models": {}, "skipped": {}}
    return json.loads(CATALOG.read_text())


def _build(arch: str, **kwargs: Any) -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # pretrained=False never downloads; make sure nothing tries
    import timm

    return timm.create_model(arch, pretrained=False, **{k: v for k, v in kwargs.items() if v is not None})


@functools.cache
def entry(name: str) -> ModelEntry | None:
    info = catalog()["models"].get(name[len(PREFIX):])
    if info is None:
        return None
    arch = name[len(PREFIX):]
    args = {"num_classes": Arg("int", 1000, lo=1, hi=100_000, help="size of the classifier output")}
    if info["img_size"]:
        args["img_size"] = Arg("int", None, lo=8, hi=2048, help="input side (default: the architecture's own, "
                                                                f"{info['input_size'][-1]})")
    if info.get("in_chans"):
        args["in_chans"] = Arg("int", None, lo=1, hi=64, help="input channels (default: the architecture's own, "
                                                              f"{info['input_size'][0]})")
    if info.get("drop_rate"):
        args["drop_rate"] = Arg("float", None, lo=0.0, hi=1.0, help="dropout before the classifier (default: the "
                                                                    "architecture's own; off in the engine's eval-mode "
                                                                    "scoring, used when training)")
    return ModelEntry(name=name, family="timm", builder=functools.partial(_build, arch), args=args,
                      count_params=None, input_shape=tuple(info["input_size"]),
                      description=f"timm {arch}, pretrained=False ({info['params']:,} params with 1000 classes)")


def names() -> list[str]:
    return [PREFIX + n for n in catalog()["models"]]


register_prefix(PREFIX, entry, names)
