"""Model registry. Torch-free to import; `create`/`build` import torch lazily.

Usage::

    from initscore import models
    net = models.create("resnet20", bn=False)
    net = models.build({"arch": "nb201", "args": {"cell": "|nor_conv_3x3~0|+|...|"}})
    models.list_models()
"""
from initscore.models.registry import (
    Arg,
    ModelEntry,
    build,
    check_cap,
    count_params,
    create,
    get_entry,
    list_models,
    register_model,
    register_prefix,
    sources,
    validate_spec,
)

__all__ = ["Arg", "ModelEntry", "build", "check_cap", "count_params", "create", "get_entry", "list_models", "register_model",
           "register_prefix", "sources", "validate_spec"]
