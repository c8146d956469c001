"""Training comparisons of initializations: Kaiming, NIO, GradInit, MetaInit.

``run_experiment(config, out_dir) -> ExperimentResult`` (torch; imported lazily
here so ``initscore.experiments.config`` and the presets stay torch-free).
See :mod:`initscore.experiments.runner` for what is measured and
:mod:`initscore.experiments.config` for the recipe and the presets.
"""
from __future__ import annotations

from typing import Any

from initscore.experiments.config import (
    METHODS,
    PRESETS,
    DataConfig,
    ExperimentConfig,
    InitConfig,
    ModelConfig,
    RecipeConfig,
    override,
    parse_config,
    preset,
)

_LAZY = {"run_experiment": "runner", "ExperimentResult": "runner", "load_result": "runner",
         "markdown": "summary", "summarize": "summary"}

__all__ = ["METHODS", "PRESETS", "DataConfig", "ExperimentConfig", "InitConfig", "ModelConfig", "RecipeConfig",
           "override", "parse_config", "preset", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'initscore.experiments' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"initscore.experiments.{mod}"), name)
    globals()[name] = value
    return value
