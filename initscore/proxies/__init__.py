"""Zero-cost architecture proxies (torch-free to import; the engines load lazily).

Every proxy maps ``(model, batch) -> float`` with ONE sign convention: higher means
the architecture is predicted to train to a better accuracy. The definitions follow
the reference implementations so that published correlations reproduce:

* zero-cost-nas ``find_measures`` (Abdelfattah et al., "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021): grad_norm, snip, grasp, fisher, jacob_cov, synflow
  -- summed over the weights of every Conv/Linear layer, BatchNorm in training mode
  (synflow: BatchNorm removed);
* naswot (Mellor et al., ICML 2021), gradsign (Zhang & Jia, ICLR 2022),
  zen (Lin et al., ICCV 2021);
* gradcosine / gradnorm as :func:`initscore.scores.gradcosine` with ``bn="per_sample"`` (Yang et al.,
  NeurIPS 2022), computed in the same per-sample pass as gradsign;
* params / flops baselines;
* zico (ICLR 2023), meco / meco_opt (NeurIPS 2023), swap / swap_reg (ICLR 2024), the AZ-NAS
  components az_expressivity / az_progressivity / az_trainability (CVPR 2024; complexity = flops),
  NASLib's epe_nas, plain and l2_norm; ``ensemble``, the recommended score.

Every proxy is registered in :mod:`initscore.proxies.registry` (name, definition, source, the
artifacts it needs, the pass that computes them).

Usage::

    from initscore import proxies
    proxies.PROXIES                       # names
    proxies.compute("synflow", model, (x, y))
    values, errors = proxies.compute_many(["snip", "grasp", "naswot"], model, (x, y))
    rows = proxies.score_architectures(specs, (x, y), ["synflow", "jacob_cov"])

`compute_many` shares forward/backward passes between proxies, never mutates the
caller's model, and reports a non-finite value as an error for that proxy (never a
silently replaced number).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from initscore.proxies.registry import REGISTRY

DESCRIPTIONS: dict[str, str] = {name: info.description for name, info in REGISTRY.items()}

PROXIES: tuple[str, ...] = tuple(DESCRIPTIONS)

_LAZY = {
    "compute": "initscore.proxies.engine",
    "compute_many": "initscore.proxies.engine",
    "score_architectures": "initscore.proxies.batch",
    "spec_seed": "initscore.proxies.batch",
    "ArchScores": "initscore.proxies.batch",
}

__all__ = ["PROXIES", "DESCRIPTIONS", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'initscore.proxies' has no attribute {name!r}")
    value = getattr(import_module(mod), name)
    globals()[name] = value
    return value
