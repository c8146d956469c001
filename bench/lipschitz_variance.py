"""Reproduce the LDLT layer's headline output variances (He -> 0.41?, 10/sqrt(n), alpha=1 -> 0.9) and
plot the K=10 Wishart series against Monte Carlo as sigma^2 grows.

Run:  flock /tmp/initscore-bench.lock .venv/bin/python bench/lipschitz_variance.py
Writes docs/figures/lipschitz_series_vs_mc.png (and _64.png); prints every number it reports.
"""
from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from initscore.lipschitz import layer_variance_mc  # noqa: E402
from initscore.wishart import (  # noqa: E402
    plot_variance_table,
    recommend_scale,
    series_ratio,
    variance_mc,
    variance_series,
    variance_table,
)

FIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "figures")


def headline() -> None:
    print("== headline: Var[y] of one LDLT layer, L = 1, x ~ N(0, I_n), sigma = c / sqrt(n)")
    print(f"{'m':>5} {'n':>5} {'c':>5} {'alpha':>5} {'MC (W0 eig.)':>16} {'MC (torch layer)':>18} "
          f"{'series K=10':>13} {'ratio':>7}")
    for m, n in ((64, 64), (256, 256), (28, 64), (64, 28), (128, 256)):
        for c in (1.0, 10.0):
            s2 = c * c / n
            mc, se = variance_mc(m, n, s2, 1.0, samples=1000 if m <= 128 else 200, seed=0)
            lm, lse = layer_variance_mc(m, n, c, 1.0, layers=100 if m <= 128 else 30, batch=256, seed=0)
            ser = variance_series(m, n, s2, 1.0)
            print(f"{m:5d} {n:5d} {c:5g} {1.0:5g} {mc:9.4f}+-{se:.4f} {lm:11.4f}+-{lse:.4f} {ser:13.4g} "
                  f"{series_ratio(m, n, s2, 1.0):7.3g}")
    print(f"large m = n limit at He scale (Marchenko-Pastur, ratio 1): 1 - (sqrt(5) - 1)/2 = {(3 - math.sqrt(5)) / 2:.4f}")
    # which aspect ratio m/n gives 0.41 at He scale?
    n = 200
    best = None
    for m in range(20, 201, 10):
        v, _ = variance_mc(m, n, 1.0 / n, 1.0, samples=100, seed=1)
        v10, _ = variance_mc(m, n, 100.0 / n, 1.0, samples=100, seed=1)
        if best is None or abs(v - 0.41) < abs(best[1] - 0.41):
            best = (m, v, v10)
    print(f"He-scale variance closest to 0.41 at n = {n}: m = {best[0]} (m/n = {best[0] / n:.2f}): "
          f"{best[1]:.4f}; the same shape at 10/sqrt(n) gives {best[2]:.4f}")
    for tgt in (0.41, 0.5, 0.9, 0.95):
        rec = recommend_scale(tgt, 64, 64, 1.0, samples=400, seed=0)
        print(f"recommend_scale(target={tgt}, m=n=64, alpha=1): init_scale = {rec.init_scale:.3f} "
              f"(Var by MC {rec.variance:.4f})")


def series_vs_mc() -> None:
    scales = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0, 1.5, 2, 4, 10]
    for m, n, name in ((16, 16, "lipschitz_series_vs_mc.png"), (64, 64, "lipschitz_series_vs_mc_64.png")):
        print(f"\n== series (K=10) vs Monte Carlo, m={m}, n={n}, alpha=1 (sigma = c/sqrt(n))")
        rows = variance_table(m, n, 1.0, scales, samples=4000 if m <= 16 else 1000, seed=0)
        print(f"{'c':>5} {'sigma^2':>9} {'ratio':>7} {'MC':>8} {'se':>7} {'series':>12} {'rel.err':>9}")
        for r in rows:
            print(f"{r['init_scale']:5g} {r['sigma2']:9.4g} {r['ratio']:7.3g} {r['mc']:8.4f} {r['mc_se']:7.4f} "
                  f"{r['series']:12.5g} {r['rel_err']:9.2g}")
        bad = [r for r in rows if r["rel_err"] > max(0.01, 3 * r["mc_se"] / r["mc"])]
        if bad:
            print(f"series first off by > 1% (and > 3 se) at c = {bad[0]['init_scale']:g}, "
                  f"ratio sigma^2 (sqrt m + sqrt n)^2 / alpha = {bad[0]['ratio']:.3g}")
        path = os.path.join(FIG, name)
        plot_variance_table(rows, path, title=f"LDLT layer output variance: K=10 series vs Monte Carlo (m={m}, n={n}, alpha=1)")
        print(f"wrote {path}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    headline()
    series_vs_mc()
    print(f"\n{time.perf_counter() - t0:.1f} s")
