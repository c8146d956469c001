"""Exact real-Wishart trace moments and the LDLT variance series."""
from __future__ import annotations

import math

import pytest

from initscore.errors import OptionsError
from initscore.wishart import (
    evaluate,
    expected_trace_power,
    pairing_polynomial,
    recommend_scale,
    series_ratio,
    trace_moment_polynomial,
    trace_power_mc,
    variance_mc,
    variance_series,
)


@pytest.mark.parametrize("m,n", [(1, 1), (3, 5), (7, 2), (64, 64)])
@pytest.mark.parametrize("s2", [1.0, 0.3])
def test_closed_forms_k1_k2(m, n, s2):
    assert expected_trace_power(1, m, n, s2) == pytest.approx(m * n * s2, rel=1e-14)
    assert expected_trace_power(2, m, n, s2) == pytest.approx(s2**2 * m * n * (m + n + 1), rel=1e-14)


@pytest.mark.parametrize("k", range(1, 7))
def test_recursion_equals_brute_force_wick_pairings(k):
    assert trace_moment_polynomial(k) == pairing_polynomial(k)


@pytest.mark.parametrize("k", range(1, 11))
def test_m_equal_1_is_chi_square_moment(k):
    # S = ||w||^2 ~ chi^2_n: E = n (n + 2) ... (n + 2k - 2)
    for n in (1, 2, 5, 11):
        assert expected_trace_power(k, 1, n) == math.prod(n + 2 * i for i in range(k))


@pytest.mark.parametrize("k", range(1, 11))
def test_symmetric_in_m_n_and_leading_terms_are_narayana(k):
    p = trace_moment_polynomial(k)
    assert p == {(b, a): c for (a, b), c in p.items()}
    # planar (top-degree) part: Narayana numbers N(k, j) = C(k, j) C(k, j-1) / k
    for j in range(1, k + 1):
        assert p[(j, k + 1 - j)] == math.comb(k, j) * math.comb(k, j - 1) // k
    assert max(a + b for a, b in p) == k + 1


@pytest.mark.parametrize("k", range(1, 11))
def test_moments_against_monte_carlo(k):
    m, n = 2, 3
    mc, se = trace_power_mc(k, m, n, sigma2=0.5, samples=40_000, seed=123)
    exact = expected_trace_power(k, m, n, 0.5)
    # heavy right tail for large k: the sample standard error underestimates; allow 5 se
    assert abs(mc - exact) <= 5 * se, (k, mc, exact, se)


def test_series_matches_monte_carlo_where_it_converges():
    m = n = 8
    for c in (0.1, 0.2, 0.3):  # series_ratio 0.04, 0.16, 0.36
        s2 = c**2 / n
        assert series_ratio(m, n, s2, 1.0) < 0.5
        mc, se = variance_mc(m, n, s2, samples=4000, seed=1)
        ser = variance_series(m, n, s2)
        assert abs(ser - mc) <= 4 * se + 1e-3 * mc, (c, ser, mc, se)


def test_series_diverges_beyond_spectral_radius_one():
    m = n = 8
    s2 = 1.0 / n  # He scale: ratio 4
    assert series_ratio(m, n, s2, 1.0) == pytest.approx(4.0)
    mc, _ = variance_mc(m, n, s2, samples=500, seed=0)
    assert abs(variance_series(m, n, s2) - mc) > 1.0  # order-10 truncation is nowhere near


def test_series_truncation_error_shrinks_with_order():
    m, n, s2 = 4, 6, 0.01
    mc, _ = variance_mc(m, n, s2, samples=20_000, seed=2)
    errs = [abs(variance_series(m, n, s2, order=K) - mc) for K in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2] * 0.5


@pytest.mark.parametrize("target", [0.2, 0.5, 0.9])
def test_recommend_scale_round_trip(target):
    rec = recommend_scale(target, 16, 16, alpha=1.0, samples=300, seed=0)
    assert rec.variance == pytest.approx(target, abs=1e-5)
    # an independent Monte Carlo at the recommended sigma lands on the target
    mc, se = variance_mc(16, 16, rec.sigma**2, samples=1000, seed=99)
    assert abs(mc - target) < 4 * se + 0.01


def test_recommend_scale_series_round_trip_in_valid_range():
    rec = recommend_scale(0.05, 8, 8, method="series")
    assert variance_series(8, 8, rec.sigma**2) == pytest.approx(0.05, abs=1e-6)
    mc, se = variance_mc(8, 8, rec.sigma**2, samples=4000, seed=5)
    assert abs(mc - 0.05) < 4 * se + 1e-3


def test_recommend_scale_rejects_impossible_targets():
    with pytest.raises(OptionsError):
        recommend_scale(1.0, 8, 8)  # Var < L^2 = 1 always
    with pytest.raises(OptionsError):
        recommend_scale(0.9, 8, 8, method="series")  # outside the series' range


def test_evaluate_exact_integers_for_large_dims():
    p = trace_moment_polynomial(10)
    v = evaluate(p, 1000, 1000)
    assert v > 0 and math.isfinite(v)
