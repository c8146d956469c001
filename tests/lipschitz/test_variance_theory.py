"""wishart.variance_theory (Marchenko-Pastur + the real-Gaussian 1/m correction) against Monte Carlo of (1)."""
from __future__ import annotations

import math

import pytest

from initscore.errors import OptionsError
from initscore.wishart import series_ratio, variance_mc, variance_theory


@pytest.mark.parametrize("n,samples", [(16, 4000), (64, 1500), (256, 300)])
@pytest.mark.parametrize("scale2", [1.0, 100.0])  # He (sigma^2 = 1/n) and 10/sqrt(n) (sigma^2 = 100/n)
def test_theory_matches_monte_carlo_where_the_series_diverges(n, samples, scale2):
    sigma2 = scale2 / n
    assert series_ratio(n, n, sigma2, 1.0) > 1  # the series (2) is useless here
    mc, se = variance_mc(n, n, sigma2, 1.0, samples=samples, seed=3)
    th = variance_theory(n, n, sigma2, 1.0)
    limit = variance_theory(n, n, sigma2, 1.0, order=0)
    assert abs(th - mc) < abs(limit - mc)  # the 1/m term is the finite-size effect, not noise
    if n == 16 and scale2 == 100.0:
        # the hard edge of a small square Wishart: O(1/n^2) left over, 2.5e-3 to 3.6e-3 measured
        assert abs(th - mc) < 5e-3
    else:
        assert abs(th - mc) < 1e-3 + 3 * se


def test_closed_forms_and_where_041_comes_from():
    # square, He, alpha 1, n -> infinity: 1 - (sqrt 5 - 1) / 2 = (3 - sqrt 5) / 2
    assert variance_theory(10**6, 10**6, 1e-6, order=0) == pytest.approx((3 - math.sqrt(5)) / 2, rel=1e-9)
    # 0.41 at He needs m / n = 0.75 (or, square, sigma^2 n / alpha = 1 / (2 (sqrt 2 - 1)) for sqrt 2 - 1)
    assert variance_theory(150, 200, 1 / 200, order=0) == pytest.approx(0.4093, abs=1e-4)
    u = 2 * (math.sqrt(2) - 1)
    assert variance_theory(1000, 1000, 1 / (u * 1000), order=0) == pytest.approx(math.sqrt(2) - 1, rel=1e-9)
    # the natural square settings give other values: 2/n -> 0.5, PyTorch's 1/(3n) -> 0.209
    assert variance_theory(64, 64, 2 / 64, order=0) == pytest.approx(0.5, abs=1e-12)
    assert variance_theory(64, 64, 1 / (3 * 64), order=0) == pytest.approx(1 - (math.sqrt(21) - 3) / 2, rel=1e-9)
    with pytest.raises(OptionsError):
        variance_theory(4, 4, 0.1, order=2)


@pytest.mark.parametrize("m,n", [(48, 64), (64, 48)])
def test_rectangular(m, n):
    for scale2 in (1.0, 100.0):
        mc, se = variance_mc(m, n, scale2 / n, 1.0, samples=1500, seed=4)
        assert abs(variance_theory(m, n, scale2 / n) - mc) < 5e-4 + 3 * se


def test_pfaffian_evaluation_reproduces_the_exact_moments():
    from initscore.wishart import evaluate, expected_trace_exact, trace_moment_polynomial

    for N, p in ((16, 16), (6, 10), (8, 9)):
        for k in (1, 2, 3):
            want = evaluate(trace_moment_polynomial(k), N, p)
            assert expected_trace_exact(lambda lam, k=k: lam ** k, N, p) == pytest.approx(want, rel=1e-6), (N, p, k)
    with pytest.raises(OptionsError):
        expected_trace_exact(lambda lam: lam, 5, 8)


@pytest.mark.parametrize("n,samples", [(16, 20000), (64, 3000), (256, 300)])
@pytest.mark.parametrize("scale2", [1.0, 100.0])
def test_exact_variance_matches_monte_carlo_to_1e_3(n, samples, scale2):
    """The finite-n evaluation (de Bruijn's Pfaffian) meets Monte Carlo where the asymptotic theory at n = 16 does
    not: the issue's target, 1e-3 at He and 10/sqrt(n) for m = n in {16, 64, 256}."""
    from initscore.wishart import variance_exact

    mc, se = variance_mc(n, n, scale2 / n, 1.0, samples=samples, seed=5)
    ex = variance_exact(n, n, scale2 / n, 1.0)
    assert abs(ex - mc) < 1e-3 and abs(ex - mc) < 4 * se + 1e-4
