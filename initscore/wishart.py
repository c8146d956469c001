"""Exact moments of a real Wishart matrix and the LDLT layer's output-variance series.

Setting (Juston et al., "LDLT L-Lipschitz Network Weight Parameterization
Initialization", arXiv 2601.08253, 2026): W0 is m x n with i.i.d. N(0, sigma^2)
entries and S = W0 W0^T ~ W_m(n, sigma^2 I_m) (REAL Wishart). The layer
y = M x, M = gamma W0 (alpha I_n + W0^T W0)^{-1/2}, x ~ N(0, I_n), has

    Var[y] = (1/m) tr E Cov[y | W0] = gamma^2 (1 - (alpha/m) E tr (alpha I_m + S)^{-1})      (1)

(Woodbury / push-through: W0 (alpha I_n + W0^T W0)^{-1} W0^T = I_m - alpha (alpha I_m + S)^{-1}).
The Neumann series (alpha I + S)^{-1} = sum_k (-1)^k S^k / alpha^{k+1} turns (1) into

    Var[y] ~= gamma^2 sum_{k=1}^{K} (-1)^{k+1} E tr(S^k) / (m alpha^k)                         (2)

which converges only while the spectral radius of S/alpha is below 1; the largest
eigenvalue of S is about sigma^2 (sqrt m + sqrt n)^2 (Marchenko-Pastur edge), so the
truncated series is accurate for sigma^2 (sqrt m + sqrt n)^2 / alpha well below 1
and useless beyond (see :func:`series_ratio`).

Exact moments E tr(S^k) (S = W W^T, W real m x n with i.i.d. N(0, 1) entries; scale
by sigma^{2k}). By Isserlis/Wick, E tr(S^k) = sum over the (2k-1)!! pairings of the
2k entries W_{i1 j1} W_{i2 j1} W_{i2 j2} ... W_{i1 jk} of m^{#row classes} n^{#column classes}
(:func:`pairing_polynomial`, the definition, used as the brute-force check for k <= 6).
For speed we use the equivalent Stein (Gaussian integration by parts) recursion on
products of traces p_lambda = prod_i tr(S^{lambda_i}), tr(S^0) = m:

    E[tr(S^k) P] = (n + k - 1) E[tr(S^{k-1}) P]
                   + sum_{j=0}^{k-2} E[tr(S^{j+1}) tr(S^{k-2-j}) P]
                   + sum_{l in P} 2 l E[tr(S^{k+l-1}) P / tr(S^l)]                            (3)

derived from E[W_ab f(W)] = E[d f / d W_ab] with tr S^k = sum_ab W_ab (W^T S^{k-1})_ba and
d tr(S^l) / d W_ab = 2 l (S^{l-1} W)_ab. (For COMPLEX Gaussian W the last factor 2l would
be l and the (k-1) term would vanish, giving the permutation/genus sum
sum_{pi in S_k} m^{c(gamma pi^-1)} n^{c(pi)}; the real case adds the non-orientable
terms, e.g. E tr S^2 = m n (m + n + 1) rather than m n (m + n).)
The recursion gives polynomials in (m, n) with exact integer coefficients; each is
cached. Checks: k = 1: m n; k = 2: m n (m + n + 1) (Wishart literature, e.g. Letac &
Massam 2004, "All invariant moments of the Wishart distribution").

This module is torch-free (numpy only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np

from initscore.errors import OptionsError

Poly = dict[tuple[int, int], int]  # {(a, b): c} means c * m^a * n^b

MAX_K = 10


# ------------------------------------------------------------------ polynomials
def _add(acc: Poly, p: Poly, scale: int = 1) -> None:
    for key, c in p.items():
        v = acc.get(key, 0) + scale * c
        if v:
            acc[key] = v
        else:
            acc.pop(key, None)


def _mul(p: Poly, q: Poly) -> Poly:
    out: Poly = {}
    for (a, b), c in p.items():
        for (a2, b2), c2 in q.items():
            key = (a + a2, b + b2)
            out[key] = out.get(key, 0) + c * c2
    return {k: v for k, v in out.items() if v}


_M: Poly = {(1, 0): 1}
_N: Poly = {(0, 1): 1}


def evaluate(poly: Poly, m: float, n: float) -> float:
    """Value of the polynomial at (m, n), summed exactly in integers when m, n are ints."""
    if float(m).is_integer() and float(n).is_integer():
        mi, ni = int(m), int(n)
        return float(sum(c * mi**a * ni**b for (a, b), c in poly.items()))
    return float(math.fsum(c * float(m) ** a * float(n) ** b for (a, b), c in poly.items()))


@lru_cache(maxsize=None)
def _trace_product(parts: tuple[int, ...]) -> tuple[tuple[tuple[int, int], int], ...]:
    """E[prod_i tr(S^{parts_i})] for S = W W^T, W real m x n standard Gaussian, by recursion (3).

    `parts` is a sorted tuple of positive ints; the result is a frozen polynomial.
    """
    if not parts:
        return (((0, 0), 1),)
    k = parts[-1]  # peel off the largest part
    rest = list(parts[:-1])
    acc: Poly = {}

    def term(new_parts: Iterable[int]) -> Poly:
        # parts equal to 0 are tr(S^0) = m
        zeros = sum(1 for p in new_parts if p == 0)
        pos = tuple(sorted(p for p in new_parts if p > 0))
        poly = dict(_trace_product(pos))
        for _ in range(zeros):
            poly = _mul(poly, _M)
        return poly

    # (n + k - 1) E[tr S^{k-1} P]
    base = term(rest + [k - 1])
    _add(acc, _mul(base, _N))
    if k - 1:
        _add(acc, base, k - 1)
    # sum_j E[tr S^{j+1} tr S^{k-2-j} P]
    for j in range(k - 1):
        _add(acc, term(rest + [j + 1, k - 2 - j]))
    # sum over the other factors: 2 l E[tr S^{k+l-1} P / tr S^l]
    for idx, l in enumerate(rest):
        others = rest[:idx] + rest[idx + 1:]
        _add(acc, term(others + [k + l - 1]), 2 * l)
    return tuple(sorted(acc.items()))


def trace_moment_polynomial(k: int) -> Poly:
    """E tr(S^k) / sigma^{2k} as an exact integer polynomial in (m, n): {(a, b): coeff}."""
    if not isinstance(k, int) or k < 0:
        raise OptionsError(f"moment order k must be a non-negative integer, got {k!r}")
    if k == 0:
        return {(1, 0): 1}
    return dict(_trace_product((k,)))


def expected_trace_power(k: int, m: int, n: int, sigma2: float = 1.0) -> float:
    """E tr(S^k) for S ~ W_m(n, sigma2 I_m) (real Wishart), exact polynomial times sigma2^k."""
    _check_dims(m, n)
    return evaluate(trace_moment_polynomial(k), m, n) * float(sigma2) ** k


def format_polynomial(poly: Poly) -> str:
    """Human-readable polynomial, highest total degree first, e.g. 'm^2 n + m n^2 + m n'."""
    terms = []
    for (a, b), c in sorted(poly.items(), key=lambda kv: (-(kv[0][0] + kv[0][1]), -kv[0][0])):
        mono = " ".join(x for x in (_pow("m", a), _pow("n", b)) if x)
        terms.append((f"{c} " if c != 1 or not mono else "") + mono)
    return " + ".join(terms) if terms else "0"


def _pow(v: str, e: int) -> str:
    return "" if e == 0 else v if e == 1 else f"{v}^{e}"


def pairing_polynomial(k: int) -> Poly:
    """E tr((W W^T)^k) by brute-force Wick pairings ((2k-1)!! of them; for checking, k <= 6).

    The word is W_{i_1 j_1} W_{i_2 j_1} W_{i_2 j_2} W_{i_3 j_2} ... W_{i_k j_k} W_{i_1 j_k};
    each pairing identifies the row indices and the column indices of the paired factors,
    and contributes m^{#row classes} n^{#column classes}.
    """
    if k < 1 or k > 7:
        raise OptionsError("pairing_polynomial is a brute-force check: use 1 <= k <= 7")
    # factor 2t: (row t, col t); factor 2t+1: (row t+1 mod k, col t)
    rows = [t // 2 if t % 2 == 0 else (t // 2 + 1) % k for t in range(2 * k)]
    cols = [t // 2 for t in range(2 * k)]
    out: Poly = {}

    def classes(labels: list[int], pairs: list[tuple[int, int]]) -> int:
        parent = list(range(k))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in pairs:
            ra, rb = find(labels[a]), find(labels[b])
            if ra != rb:
                parent[ra] = rb
        return len({find(i) for i in range(k)})

    def rec(free: list[int], pairs: list[tuple[int, int]]) -> None:
        if not free:
            key = (classes(rows, pairs), classes(cols, pairs))
            out[key] = out.get(key, 0) + 1
            return
        first = free[0]
        for idx in range(1, len(free)):
            rec(free[1:idx] + free[idx + 1:], pairs + [(first, free[idx])])

    rec(list(range(2 * k)), [])
    return out


# ------------------------------------------------------------------ the variance series
def _check_dims(m: int, n: int) -> None:
    if not (isinstance(m, int) and isinstance(n, int)) or m < 1 or n < 1:
        raise OptionsError(f"m and n must be positive integers, got m={m!r}, n={n!r}")


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise OptionsError(f"{name} must be a positive finite number, got {value!r}")
    return value


def series_ratio(m: int, n: int, sigma2: float, alpha: float) -> float:
    """sigma^2 (sqrt m + sqrt n)^2 / alpha: the approximate spectral radius of S / alpha.

    The Neumann series (2) converges (for typical W0) only where this is < 1.
    """
    return float(sigma2) * (math.sqrt(m) + math.sqrt(n)) ** 2 / float(alpha)


def variance_series(m: int, n: int, sigma2: float, alpha: float = 1.0, lipschitz: float = 1.0,
                    order: int = MAX_K) -> float:
    """Truncated series (2): gamma^2 sum_{k=1}^{order} (-1)^{k+1} E tr(S^k) / (m alpha^k)."""
    _check_dims(m, n)
    alpha = _check_positive("alpha", alpha)
    sigma2 = _check_positive("sigma^2", sigma2)
    if not 1 <= order <= MAX_K:
        raise OptionsError(f"series order must be in 1..{MAX_K}, got {order}")
    total = math.fsum(
        (-1) ** (k + 1) * evaluate(trace_moment_polynomial(k), m, n) * (sigma2 / alpha) ** k
        for k in range(1, order + 1)
    )
    return float(lipschitz) ** 2 * total / m


def variance_mc(m: int, n: int, sigma2: float, alpha: float = 1.0, lipschitz: float = 1.0,
                samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo of (1) over W0 (exact in x): mean and standard error.

    For each sampled W0, Var[y | W0] averaged over outputs is exactly
    gamma^2 (1/m) sum_i s_i / (alpha + s_i) with s_i the eigenvalues of S = W0 W0^T.
    """
    _check_dims(m, n)
    alpha = _check_positive("alpha", alpha)
    sigma2 = _check_positive("sigma^2", sigma2)
    eig = _standard_eigs(m, n, samples, seed)
    per = np.mean((sigma2 * eig) / (alpha + sigma2 * eig), axis=1) * float(lipschitz) ** 2
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else 0.0


def expected_trace_exact(f, N: int, p: int, *, points: int | None = None) -> float:
    """E sum_i f(lambda_i) over the eigenvalues of a real Wishart W_N(p, I_N) (N <= p, N even), exactly up to
    quadrature: de Bruijn's Pfaffian.

    The eigenvalues have the joint density prop. to prod_i w(lambda_i) prod_{i<j} |lambda_i - lambda_j|,
    w(x) = x^((p-N-1)/2) e^(-x/2) (the real, beta = 1, Laguerre ensemble). For N even (de Bruijn 1955)
        E prod_i (1 + eps f(lambda_i)) = Pf A(eps) / Pf A(0),
        A_jk(eps) = int int sign(y - x) phi_j(x) phi_k(y) (1 + eps f(x)) (1 + eps f(y)) dx dy,
    phi_j = q_j w for any basis q_0..q_{N-1} of the polynomials of degree < N, so
        E sum_i f(lambda_i) = d/d eps log Pf A |_0 = tr(A^-1 A') / 2,
        A'_jk = int int sign(y - x) phi_j(x) phi_k(y) (f(x) + f(y)) dx dy.
    Basis: Laguerre polynomials L_j(x) (their functions L_j e^(-x/2) are orthonormal, so A stays well
    conditioned: condition number ~40 at N = 16). Integrals on x = u^2 (the weight's x^(-1/2) at p = N becomes
    smooth), a uniform grid of ``points`` nodes in u up to sqrt(2 (sqrt N + sqrt p)^2 + 200), the inner integral
    by the cumulative trapezoid rule. ``f`` maps a numpy array of eigenvalues to values.
    """
    if N % 2 or N < 2 or p < N:
        raise OptionsError(f"the Pfaffian evaluation needs an even N >= 2 and p >= N, got N={N}, p={p}")
    a = (p - N - 1) / 2.0
    edge = (math.sqrt(N) + math.sqrt(p)) ** 2
    u_max = math.sqrt(2.0 * edge + 200.0)
    npts = points or int(min(2_000_000, max(50_001, 500 * N)))
    u = np.linspace(0.0, u_max, npts)
    x = u * u
    h = u[1] - u[0]
    # phi_j(x) dx = q_j(x) x^a e^(-x/2) dx with dx = 2u du. c = 2a = p - N - 1: for c > -1, q_j x^a e^(-x/2) are
    # the orthonormal Laguerre functions psi_j^(c) (recurrence started in log space: x^a e^(-x/2) under- and
    # overflows separately); for c = -1 (square), w dx = 2 e^(-u^2/2) du and q_j = L_j^(0) with e^(-x/2).
    c = 2 * a
    psi = np.empty((N, npts))
    if c > -1:
        with np.errstate(divide="ignore"):
            logx = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), -np.inf)
        psi[0] = np.exp(a * logx - x / 2 - 0.5 * math.lgamma(c + 1)) if a > 0 else \
            np.exp(-x / 2 - 0.5 * math.lgamma(c + 1)) * (np.power(x, a) if a != 0 else 1.0)
        if N > 1:
            psi[1] = (1 + c - x) * psi[0] / math.sqrt(1 + c)
        for j in range(1, N - 1):
            psi[j + 1] = ((2 * j + 1 + c - x) * psi[j] - math.sqrt(j * (j + c)) * psi[j - 1]) / \
                math.sqrt((j + 1) * (j + 1 + c))
        phi = psi * (2.0 * u)
    else:
        psi[0] = np.exp(-x / 2)
        if N > 1:
            psi[1] = (1.0 - x) * psi[0]
        for j in range(1, N - 1):
            psi[j + 1] = ((2 * j + 1 - x) * psi[j] - j * psi[j - 1]) / (j + 1)
        phi = psi * 2.0
    trap = np.full(npts, h)
    trap[0] = trap[-1] = h / 2

    def sign_kernel(g: np.ndarray) -> np.ndarray:  # int sign(y - x) g(x) dx at every y = 2 G(y) - G(inf)
        c = np.zeros_like(g)
        c[:, 1:] = np.cumsum((g[:, 1:] + g[:, :-1]) * (0.5 * h), axis=1)
        return 2.0 * c - c[:, -1:]

    fx = np.asarray(f(x), dtype=np.float64)
    k0 = sign_kernel(phi)
    A = k0 @ (phi * trap).T
    Ap = sign_kernel(phi * fx) @ (phi * trap).T + k0 @ (phi * fx * trap).T
    return 0.5 * float(np.trace(np.linalg.solve(A, Ap)))


def variance_exact(m: int, n: int, sigma2: float, alpha: float = 1.0, lipschitz: float = 1.0, *,
                   points: int | None = None) -> float:
    """Var[y] of (1) at finite m, n, exactly up to quadrature (:func:`expected_trace_exact`).

    With k = min(m, n) (even) nonzero eigenvalues sigma^2 lambda of S, lambda those of W_k(max(m, n), I):
    Var[y] = gamma^2 (1 - (|m - n| [m > n] + E sum_i alpha / (alpha + sigma^2 lambda_i)) / m).
    """
    _check_dims(m, n)
    alpha = _check_positive("alpha", alpha)
    sigma2 = _check_positive("sigma^2", sigma2)
    k, p = min(m, n), max(m, n)
    mean_f = expected_trace_exact(lambda lam: alpha / (alpha + sigma2 * lam), k, p, points=points)
    zeros = m - k  # S = W0 W0^T has m - n zero eigenvalues when m > n, f(0) = 1
    return float(lipschitz) ** 2 * (1.0 - (zeros + mean_f) / m)


def variance_theory(m: int, n: int, sigma2: float, alpha: float = 1.0, lipschitz: float = 1.0, *,
                    order: int = 1, nodes: int = 4001) -> float:
    """Var[y] of (1) from the eigenvalue distribution of S, valid where the series (2) diverges.

    Write S = t B, t = sigma^2 n, B = Z Z^T / n with Z m x n standard normal, y = m / n, and
    f(x) = alpha / (alpha + t x), so that (1) is Var[y] = gamma^2 (1 - (1/m) E tr f(B)).

    order 0 (m, n -> infinity at fixed y): (1/m) E tr f(B) -> int f dF_y, F_y the Marchenko-Pastur law,
    int f dF_y = (alpha / t) s(-alpha / t) with its Stieltjes transform (Bai & Silverstein, "Spectral Analysis
    of Large Dimensional Random Matrices", 2010, eq. 3.1.1)
        s(z) = ((1 - y - z) - sqrt((z - 1 - y)^2 - 4 y)) / (2 y z)        (z < 0: the root in (0, -1/z)).
    order 1 (default) adds the O(1/m) mean of the linear spectral statistic of REAL Gaussian entries
    (Bai & Silverstein, Ann. Probab. 32, 2004, Theorem 1.1, the real case):
        E tr f(B) - m int f dF_y -> (f(a) + f(b)) / 4 - (1/(2 pi)) int_0^pi f(1 + y + 2 sqrt(y) cos th) dth,
    a, b = (1 -+ sqrt y)^2 (the integral in the angle form; ``nodes``-point trapezoid, spectrally accurate for
    this periodic smooth integrand). The error left is O(1/n^2): measured against Monte Carlo (docs/propagation.md)
    it is below 1e-3 for n >= 64 and at He scale for n = 16, 2.5e-3 at 10/sqrt(n) for n = m = 16.
    """
    _check_dims(m, n)
    alpha = _check_positive("alpha", alpha)
    sigma2 = _check_positive("sigma^2", sigma2)
    if order not in (0, 1):
        raise OptionsError(f"order must be 0 (Marchenko-Pastur limit) or 1 (with the 1/m correction), got {order!r}")
    y, t = m / n, sigma2 * n
    z = -alpha / t
    root = math.sqrt((z - 1 - y) ** 2 - 4 * y)
    s_mp = ((1 - y - z) - root) / (2 * y * z)
    mean_f = (alpha / t) * s_mp
    if order == 1:
        def f(x: np.ndarray | float) -> np.ndarray | float:
            return alpha / (alpha + t * x)

        lo, hi = (1 - math.sqrt(y)) ** 2, (1 + math.sqrt(y)) ** 2
        th = np.linspace(0.0, math.pi, nodes)
        vals = f(1 + y + 2 * math.sqrt(y) * np.cos(th))
        integral = float(np.sum((vals[1:] + vals[:-1]) * 0.5) * (th[1] - th[0]))
        mean_f += ((f(lo) + f(hi)) / 4 - integral / (2 * math.pi)) / m
    return float(lipschitz) ** 2 * (1.0 - mean_f)


@lru_cache(maxsize=32)
def _standard_eigs_cached(m: int, n: int, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((samples, m))
    for s in range(samples):
        z = rng.standard_normal((m, n))
        out[s] = np.clip(np.linalg.eigvalsh(z @ z.T), 0.0, None)
    out.setflags(write=False)
    return out


def _standard_eigs(m: int, n: int, samples: int, seed: int) -> np.ndarray:
    if samples < 1:
        raise OptionsError(f"samples must be >= 1, got {samples}")
    if m * m * samples > 50_000_000:
        raise OptionsError(f"Monte Carlo too large (m={m}, samples={samples}); lower samples or m")
    return _standard_eigs_cached(m, n, samples, seed)


def trace_power_mc(k: int, m: int, n: int, sigma2: float = 1.0, samples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """Monte Carlo E tr(S^k) (mean, standard error) from sampled eigenvalues."""
    eig = _standard_eigs(m, n, samples, seed)
    per = np.sum(eig.astype(np.float64) ** k, axis=1) * float(sigma2) ** k
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(len(per)))


# ------------------------------------------------------------------ recommend a scale
@dataclass(frozen=True)
class ScaleRecommendation:
    """init_scale c such that sigma = c / sqrt(n) gives the requested output variance."""

    target_var: float
    init_scale: float
    sigma: float
    variance: float  # achieved (estimate used by the solver)
    method: str  # "mc" or "series"
    m: int
    n: int
    alpha: float
    lipschitz: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def recommend_scale(target_var: float, m: int, n: int, alpha: float = 1.0, lipschitz: float = 1.0, *,
                    method: str = "mc", samples: int = 400, seed: int = 0, tol: float = 1e-6) -> ScaleRecommendation:
    """Solve Var[y](sigma) = target_var for sigma by bisection on log sigma.

    method="mc": the Monte Carlo estimate of (1) with common random numbers (the same
    standard eigenvalues for every sigma), which is exactly increasing in sigma, so the
    bisection is well posed. method="series": the truncated series (2), valid only where
    series_ratio < 1 (otherwise an OptionsError says so).
    Var[y] < lipschitz^2 always (the layer is a strict contraction scaled by gamma), so
    target_var must lie in (0, lipschitz^2).
    """
    _check_dims(m, n)
    alpha = _check_positive("alpha", alpha)
    lipschitz = _check_positive("lipschitz", lipschitz)
    target_var = float(target_var)
    if not (0.0 < target_var < lipschitz**2):
        raise OptionsError(
            f"target variance must be in (0, lipschitz^2 = {lipschitz**2:g}): the layer's output "
            f"variance is always below lipschitz^2; got {target_var!r}"
        )
    if method == "mc":
        eig = _standard_eigs(m, n, samples, seed)

        def f(sig2: float) -> float:
            return float(np.mean((sig2 * eig) / (alpha + sig2 * eig))) * lipschitz**2
    elif method == "series":
        def f(sig2: float) -> float:
            return variance_series(m, n, sig2, alpha, lipschitz)
    else:
        raise OptionsError(f"method must be 'mc' or 'series', got {method!r}")

    lo, hi = -40.0, 40.0  # log sigma^2 bracket
    if method == "series":
        hi = math.log(0.5 * alpha / (math.sqrt(m) + math.sqrt(n)) ** 2)  # stay where the series converges
        if f(math.exp(hi)) < target_var:
            raise OptionsError(
                f"target variance {target_var:g} is beyond the series' range of validity "
                f"(series_ratio < 0.5 gives at most {f(math.exp(hi)):.4g}); use method='mc'"
            )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(math.exp(mid)) < target_var:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    sig2 = math.exp(0.5 * (lo + hi))
    sigma = math.sqrt(sig2)
    return ScaleRecommendation(
        target_var=target_var, init_scale=sigma * math.sqrt(n), sigma=sigma, variance=f(sig2), method=method,
        m=m, n=n, alpha=alpha, lipschitz=lipschitz,
    )


def variance_table(m: int, n: int, alpha: float, init_scales: Iterable[float], lipschitz: float = 1.0,
                   samples: int = 2000, seed: int = 0) -> list[dict]:
    """Series vs Monte Carlo rows for init scales c (sigma = c / sqrt n)."""
    rows = []
    for c in init_scales:
        sig2 = (float(c) / math.sqrt(n)) ** 2
        mc, se = variance_mc(m, n, sig2, alpha, lipschitz, samples=samples, seed=seed)
        ser = variance_series(m, n, sig2, alpha, lipschitz)
        rows.append({
            "init_scale": float(c), "sigma2": sig2, "ratio": series_ratio(m, n, sig2, alpha),
            "mc": mc, "mc_se": se, "series": ser, "abs_err": abs(ser - mc),
            "rel_err": abs(ser - mc) / mc if mc else float("inf"),
        })
    return rows


def plot_variance_table(rows: list[dict], path: str, *, title: str = "") -> None:
    """Two panels: variance (series, Monte Carlo +- 2 se) and |series - MC| / MC against sigma^2 (log x)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    s2 = [r["sigma2"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    a1.errorbar(s2, [r["mc"] for r in rows], yerr=[2 * r["mc_se"] for r in rows], fmt="o", ms=3, label="Monte Carlo")
    ser = [r["series"] if abs(r["series"]) < 10 else float("nan") for r in rows]
    a1.plot(s2, ser, "-", label="series, K=10 (hidden where |value| > 10)")
    a1.set_xscale("log")
    a1.set_ylim(-0.05 * max(r["mc"] for r in rows), 1.1 * max(r["mc"] for r in rows))
    a1.set_xlabel("sigma^2")
    a1.set_ylabel("Var[y]")
    a1.legend()
    a1.grid(True, which="both", alpha=0.3)
    a2.loglog(s2, [max(r["rel_err"], 1e-12) for r in rows], "o-", ms=3, label="|series - MC| / MC")
    a2.loglog(s2, [2 * r["mc_se"] / r["mc"] for r in rows], ":", color="gray", label="2 MC standard errors")
    edge = [r["sigma2"] for r in rows if r["ratio"] >= 1.0]
    if edge:
        a2.axvline(edge[0], color="r", ls="--", label="sigma^2 (sqrt m + sqrt n)^2 = alpha")
    a2.legend()
    a2.set_xlabel("sigma^2")
    a2.set_ylabel("|series - MC| / MC")
    a2.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
