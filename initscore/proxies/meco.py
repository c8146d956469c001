"""MeCo (Jiang et al., NeurIPS 2023): minimum eigenvalue of the channel correlation of feature maps.

ONE sample x_1 (the first of the batch) goes forward once through a copy in training mode (the
reference's freshly built network); for every module m (the root and containers included, as the
reference hooks ``named_modules()``) whose output is a tensor, with F_m = its output for that
sample reshaped to (C, rest) (C = first dimension):

    R_m   = corrcoef of the C rows of F_m, NaN/inf entries set to 0
    meco     = sum_m lambda_min(R_m)
    meco_opt = sum_m (C/8) * lambda_min(R_m restricted to 8 random channels)   (C > 8; else = meco's term)

NaN/inf terms are dropped before the sum, as in the reference.
Source: the paper (Eq. 6) and the authors' NAS-Bench-201 script (``get_score`` with measure
'meco' / 'meco_opt': a forward hook on every module, ``torch.corrcoef``, NaN/inf -> 0,
``torch.linalg.eig`` real part, min; batch size 1). Differences: float64 and ``eigvalsh`` (R is
symmetric; the reference takes the real part of a general eigen-solver in float32); meco_opt draws
its 8 channels from a generator seeded with 0 per call (the reference uses Python's unseeded
``random.sample``) and keeps modules with C <= 8 whole (the reference raises there).
"""
from __future__ import annotations

import torch
from torch import nn

from initscore.errors import NonFiniteError
from initscore.proxies.common import finite, independent_copy

OPT_CHANNELS = 8


def _min_eig_corr(f: torch.Tensor) -> float:
    if f.shape[-1] < 2:  # one observation per channel: every correlation is NaN -> 0, so lambda_min = 0
        return 0.0
    with torch.no_grad():
        r = torch.corrcoef(f.double())
        r = torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
        if r.dim() == 0:
            r = r.reshape(1, 1)
        return float(torch.linalg.eigvalsh(r)[0])


def meco_terms(net: nn.Module, x1: torch.Tensor, opt_seed: int | None = None) -> list[float]:
    """Per-module terms, in hook order (opt_seed: meco_opt's channel sampling; None = plain meco)."""
    terms: list[float] = []
    gen = torch.Generator().manual_seed(opt_seed) if opt_seed is not None else None

    def hook(module, inp, out):
        if not isinstance(out, torch.Tensor) or out.dim() < 1:
            return
        f = out[0].detach()
        c = f.shape[0] if f.dim() >= 1 else 1
        f = f.reshape(c, -1)
        if gen is not None and c > OPT_CHANNELS:
            idx = torch.randperm(c, generator=gen)[:OPT_CHANNELS].to(f.device)
            terms.append(_min_eig_corr(f[idx]) * c / OPT_CHANNELS)
        else:
            terms.append(_min_eig_corr(f))

    hooks = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with torch.no_grad():
            net(x1)
    finally:
        for h in hooks:
            h.remove()
    return terms


def meco_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    net = independent_copy(model).train()
    out: dict[str, float] = {}
    for name, seed in (("meco", None), ("meco_opt", 0)):
        if name in names:
            terms = torch.tensor(meco_terms(net, x[:1], seed), dtype=torch.float64)
            terms = terms[torch.isfinite(terms)]
            if terms.numel() == 0:
                raise NonFiniteError(f"proxy {name!r}: no module gave a finite term", tensor=None)
            out[name] = finite(name, float(terms.sum()))
    return out
