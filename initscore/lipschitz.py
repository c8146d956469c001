"""The LDLT-based L-Lipschitz linear layer, its Monte Carlo output variance, and a Jacobian norm check.

Parameterization (source: Juston, Sreenivas, Nottage, Soylemezoglu, "LDLT L-Lipschitz
Network Weight Parameterization Initialization", arXiv 2601.08253, 2026, as summarized
publicly; the paper's full text was NOT retrievable here, so the formula is taken
from a public review of that paper and checked for consistency with its abstract):

    y = M x + b,   M = gamma W0 (alpha I_n + W0^T W0)^{-1/2},   gamma = L (the Lipschitz bound), alpha > 0

with the free parameter W0 (m x n, i.i.d. N(0, sigma^2), sigma = init_scale / sqrt(n);
init_scale = 1 is the He/Kaiming-normal-without-gain scale the paper calls "He").
It is L-Lipschitz: M^T M = gamma^2 W0^T W0 (alpha I + W0^T W0)^{-1} has eigenvalues
gamma^2 s_i / (alpha + s_i) < gamma^2. This is the linear LDL^T / Cholesky form of the
generalized LDLT L-Lipschitz construction (Juston et al., arXiv 2512.05915, which uses
a Cholesky factorization "for efficient parameterization"), the linear special case of
the SDP/LMI condition W^T W <= L^2 I shared with SLL layers (Araujo et al., ICLR 2023)
and sandwich layers (Wang & Manchester, ICML 2023).

Computation (Cholesky, so gradients are stable; no eigendecomposition):
- n <= m: alpha I_n + W0^T W0 = C C^T, M = gamma W0 C^{-T}. Then M M^T equals the
  formula's M M^T exactly (C^{-T} C^{-1} = (alpha I + W0^T W0)^{-1}), so for Gaussian
  x the output law y | W0 ~ N(b, M M^T) is identical to the formula's.
- m < n: alpha I_m + W0 W0^T = C C^T, M = gamma C^{-1} W0 (an m x m solve, cheaper).
  M = Q M_formula for an orthogonal Q, so the singular values (hence the Lipschitz
  bound) and tr(M M^T) (hence the marginal variance (1/m) tr Cov[y]) are identical.
Either way the marginal output variance for x ~ N(0, I_n), b = 0 is

    Var[y] = gamma^2 (1 - (alpha/m) E tr (alpha I_m + S)^{-1}),  S = W0 W0^T ~ W_m(n, sigma^2 I_m),

the quantity :mod:`initscore.wishart` expands in E tr(S^k).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from initscore.errors import OptionsError


INITS = ("normal", "pytorch")


class LDLTLipschitzLinear(nn.Module):
    """L-Lipschitz linear map y = gamma W0 (alpha I + W0^T W0)^{-1/2} x + b (see module docstring).

    init: "normal" (W0 ~ N(0, init_scale^2 / n), b = 0; init_scale 1 is the paper's "He") or "pytorch"
    (torch's nn.Linear default, as in the authors' code Marius-Juston/LDLTFlossing: W0 ~ U(+-init_scale/sqrt(n)),
    i.e. variance init_scale^2 / (3n), and b ~ U(+-1/sqrt(n))).
    learnable_alpha: alpha = exp(theta) with theta a trainable scalar starting at log(alpha) (positive, starts at
    ``alpha``; the authors' code learns alpha the same way, through an exponential parametrization starting at 1).
    """

    def __init__(self, in_features: int, out_features: int, *, lipschitz: float = 1.0, alpha: float = 1.0,
                 init_scale: float = 1.0, bias: bool = True, init: str = "normal",
                 learnable_alpha: bool = False) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise OptionsError("in_features and out_features must be >= 1")
        for name, v in (("lipschitz", lipschitz), ("alpha", alpha), ("init_scale", init_scale)):
            if not (math.isfinite(v) and v > 0):
                raise OptionsError(f"{name} must be a positive finite number, got {v!r}")
        if init not in INITS:
            raise OptionsError(f"init must be one of {list(INITS)}, got {init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.lipschitz = float(lipschitz)
        self.init = init
        self.init_scale = float(init_scale)
        if learnable_alpha:
            self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))
        else:
            self.register_buffer("log_alpha", torch.tensor(math.log(alpha)), persistent=False)
        self.learnable_alpha = bool(learnable_alpha)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))  # W0
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    @property
    def alpha(self) -> torch.Tensor:
        """alpha = exp(log_alpha) (> 0), a 0-dim tensor."""
        return self.log_alpha.exp()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            if self.init == "pytorch":
                self.weight.uniform_(-self.init_scale * bound, self.init_scale * bound)
                if self.bias is not None:
                    self.bias.uniform_(-bound, bound)
            else:
                self.weight.normal_(0.0, self.init_scale * bound)
                if self.bias is not None:
                    self.bias.zero_()

    def effective_weight(self) -> torch.Tensor:
        """M (out x in), with ||M||_2 < lipschitz."""
        w = self.weight
        m, n = w.shape
        if n <= m:
            gram = w.T @ w + self.alpha.to(w.dtype) * torch.eye(n, dtype=w.dtype, device=w.device)
            c = torch.linalg.cholesky(gram)
            # M = gamma W0 C^{-T}  <=>  M C^T = gamma W0
            mt = torch.linalg.solve_triangular(c, w.T, upper=False)  # C^{-1} W0^T = M^T / gamma
            return self.lipschitz * mt.T
        gram = w @ w.T + self.alpha.to(w.dtype) * torch.eye(m, dtype=w.dtype, device=w.device)
        c = torch.linalg.cholesky(gram)
        return self.lipschitz * torch.linalg.solve_triangular(c, w, upper=False)  # gamma C^{-1} W0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, lipschitz={self.lipschitz:g}, "
                f"alpha={float(self.alpha):g}{' (learnable)' if self.learnable_alpha else ''}, init={self.init}, "
                f"init_scale={self.init_scale:g}, bias={self.bias is not None}")


class MaxMin(nn.Module):
    """MaxMin / GroupSort(2) activation: sorts consecutive pairs; 1-Lipschitz and norm preserving.

    An odd trailing feature is passed through unchanged (still 1-Lipschitz).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[-1] // 2 * 2
        a, b = x[..., 0:k:2], x[..., 1:k:2]
        paired = torch.stack((torch.maximum(a, b), torch.minimum(a, b)), dim=-1).flatten(-2)
        return torch.cat((paired, x[..., k:]), dim=-1)


# ---------------------------------------------------------------- Monte Carlo of the actual layer
def layer_variance_mc(m: int, n: int, init_scale: float, alpha: float = 1.0, lipschitz: float = 1.0, *,
                      layers: int = 200, batch: int = 256, seed: int = 0,
                      input_dist: str = "gaussian") -> tuple[float, float]:
    """Output variance of freshly initialized LDLTLipschitzLinear(n -> m, bias 0) layers on unit-variance inputs.

    For each of `layers` independent initializations, draws `batch` inputs (i.i.d.
    N(0, 1) entries, or uniform on [-sqrt 3, sqrt 3] for input_dist="uniform"; both have
    unit variance), and computes the mean over outputs of E[y_i^2] (the exact mean is 0).
    Returns (mean over layers, standard error). float64 throughout.
    """
    g = torch.Generator().manual_seed(seed)
    per = []
    for _ in range(layers):
        layer = LDLTLipschitzLinear(n, m, lipschitz=lipschitz, alpha=alpha, init_scale=init_scale, bias=False)
        layer = layer.double()
        with torch.no_grad():
            layer.weight.normal_(0.0, init_scale / math.sqrt(n), generator=g)
            if input_dist == "gaussian":
                x = torch.randn(batch, n, generator=g, dtype=torch.float64)
            elif input_dist == "uniform":
                x = (torch.rand(batch, n, generator=g, dtype=torch.float64) * 2 - 1) * math.sqrt(3.0)
            else:
                raise OptionsError(f"input_dist must be 'gaussian' or 'uniform', got {input_dist!r}")
            y = layer(x)
        per.append(float(y.pow(2).mean()))
    t = torch.tensor(per, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(per))) if len(per) > 1 else 0.0


# ---------------------------------------------------------------- Lipschitz estimate of any map
def jacobian_spectral_norm(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, iters: int = 50,
                           seed: int = 0) -> float:
    """Largest singular value of the Jacobian of f at a single input x, by power iteration on J^T J.

    Uses forward-mode (jvp) and reverse-mode (vjp) products from torch.func, never
    materializing J. Returns ||J v|| for the converged unit vector v (a lower bound that
    converges to sigma_max from below).
    """
    from torch.func import jvp, vjp

    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype)
    v = v / v.norm()
    x = x.detach()
    _, pullback = vjp(f, x)
    for _ in range(iters):
        _, jv = jvp(f, (x,), (v,))
        (jtjv,) = pullback(jv)
        jtjv = jtjv.detach()
        nrm = float(jtjv.norm())
        if nrm == 0.0:
            return 0.0
        v = jtjv / nrm
    _, jv = jvp(f, (x,), (v,))
    return float(jv.detach().norm())
