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
* gradcosine / gradnorm as :func:`initscore.scores.gradcosine` with ``bn="per_sample"`` (Zhu et al.,
  NeurIPS 2022), computed in the same per-sample pass as gradsign;
* params / flops baselines.

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

DESCRIPTIONS: dict[str, str] = {
    "grad_norm": "sum over Conv/Linear weight tensors of ||dL/dW||_2, cross-entropy on the batch (Abdelfattah et al. 2021)",
    "snip": "sum |W * dL/dW| over Conv/Linear weights (Lee et al. 2019; zero-cost-nas form)",
    "grasp": "sum of -W * (H g) over Conv/Linear weights, g = dL/dW, H the Hessian (Wang et al. 2020; zero-cost-nas sign)",
    "fisher": "sum over Conv/Linear output channels of 0.5*mean_n(sum_spatial act*dL/dact)^2 times the channel's fan-in (Turner et al. 2020; zero-cost-nas form)",
    "jacob_cov": "-sum_i log(l_i + 1e-5) + 1/(l_i + 1e-5), l_i eigenvalues of the correlation of per-sample input Jacobians of sum(logits) (Mellor et al. 2020; zero-cost-nas form)",
    "naswot": "log|K_H|, K_H = sum over ReLUs of c c^T + (1-c)(1-c)^T of binary activation codes c (Mellor et al., ICML 2021)",
    "synflow": "sum |W * dR/dW|, R = sum of outputs of the |W| network without BatchNorm on an all-ones input, float64 (Tanaka et al. 2020)",
    "gradsign": "sum over Conv/Linear weights of |sum_n sign(dL_n/dW)| of per-sample gradients (Zhang & Jia, ICLR 2022)",
    "zen": "log E|f(x) - f(x + 0.01 e)| of the pre-pooling features of the N(0,1)-initialized network plus sum log sqrt(mean BN running var) (Lin et al., ICCV 2021)",
    "params": "number of parameters",
    "flops": "multiply-accumulates per sample of Conv/Linear layers (analytic, forward hooks)",
    "gradcosine": "GradCosine: mean pairwise cosine of per-sample gradients, BN with per-sample statistics (= initscore.scores.gradcosine(bn='per_sample'); Zhu et al. NeurIPS 2022)",
    "gradnorm": "GradNorm: mean norm of the per-sample gradients, from the same per-sample pass as gradcosine and gradsign",
    "ensemble": "mean of calibrated z-scores of log10 synflow, jacob_cov, naswot and log10 params (constants fixed on a separate NAS-Bench-201 sample, seed 1; see docs/nas.md)",
}

PROXIES: tuple[str, ...] = tuple(DESCRIPTIONS)

_LAZY = {
    "compute": "initscore.proxies.engine",
    "compute_many": "initscore.proxies.engine",
    "score_architectures": "initscore.proxies.batch",
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
