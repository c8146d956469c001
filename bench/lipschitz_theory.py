"""Theory (wishart.variance_theory) vs Monte Carlo of the LDLT layer's output variance where the series diverges.

Rows: m = n in {16, 64, 256} and two rectangular shapes, at He (sigma^2 = 1/n), 10/sqrt(n) (sigma^2 = 100/n),
2/n and PyTorch's default 1/(3n); alpha = 1, L = 1. Columns: the Marchenko-Pastur limit (order 0), with the 1/m
correction (order 1), the finite-(m, n) Pfaffian evaluation (variance_exact), the Monte Carlo mean over W0 (exact
in x) and its standard error, and the differences to Monte Carlo.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/lipschitz_theory.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from initscore.wishart import variance_exact, variance_mc, variance_theory  # noqa: E402

SCALES = (("He 1/n", 1.0), ("10/sqrt(n)", 100.0), ("2/n", 2.0), ("pytorch 1/(3n)", 1 / 3))


def main() -> None:
    print("| m | n | sigma^2 | MP limit | theory (1/m) | exact (Pfaffian) | Monte Carlo +- se | theory - MC | exact - MC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, n, samples in ((16, 16, 20000), (64, 64, 4000), (256, 256, 600), (150, 200, 1000), (200, 150, 1000)):
        for label, k in SCALES:
            s2 = k / n
            mc, se = variance_mc(m, n, s2, 1.0, samples=samples, seed=11)
            lim, th, ex = variance_theory(m, n, s2, order=0), variance_theory(m, n, s2), variance_exact(m, n, s2)
            print(f"| {m} | {n} | {label} | {lim:.4f} | {th:.4f} | {ex:.5f} | {mc:.4f} +- {se:.4f} | {th - mc:+.4f} | "
                  f"{ex - mc:+.5f} |", flush=True)


if __name__ == "__main__":
    main()
