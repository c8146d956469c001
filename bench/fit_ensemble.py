"""Choose and calibrate the `ensemble` proxy on a CALIBRATION sample (never the reported one).

    .venv/bin/python bench/fit_ensemble.py bench/results/nb201_calibration_seed1.json

Reads a nb201_ranking.py JSON, scores every combination (2..5) of the candidate proxies by
the Spearman rho of the mean of their calibrated z-scores (log10 for synflow/flops/params/
grad_norm/snip) on that sample, and prints the best combination with its (mean, std)
constants to paste into initscore/proxies/ensemble.py.
"""
from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
from scipy.stats import spearmanr

LOG = {"synflow", "flops", "params", "grad_norm", "snip"}


def main() -> None:
    res = json.load(open(sys.argv[1]))
    rows = [r for r in res["rows"] if r["error"] is None]
    cands = sorted({k for r in rows for k in r["values"]} - {"ensemble"})
    best = None
    for k in range(2, 6):
        for combo in itertools.combinations(cands, k):
            ok = [r for r in rows if all(c in r["values"] and (c not in LOG or r["values"][c] > 0) for c in combo)]
            t = {c: np.array([math.log10(r["values"][c]) if c in LOG else r["values"][c] for r in ok]) for c in combo}
            cal = {c: (float(t[c].mean()), float(t[c].std())) for c in combo}
            score = np.mean([(t[c] - cal[c][0]) / cal[c][1] for c in combo], axis=0)
            # arches whose inputs errored rank last (they are degenerate cells)
            full = np.full(len(rows), -np.inf)
            pos = {id(r): i for i, r in enumerate(rows)}
            for r, s in zip(ok, score):
                full[pos[id(r)]] = s
            rho = float(spearmanr(full, [r["test_acc"] for r in rows]).statistic)
            if best is None or rho > best[0]:
                best = (rho, combo, cal, len(ok))
            print(f"{rho:.3f} {'+'.join(combo)} (scored {len(ok)}/{len(rows)})")
    rho, combo, cal, n_ok = best
    print(f"\nBEST on calibration sample (n={len(rows)}, seed={res['seed']}): rho={rho:.3f} {combo}")
    print("CALIBRATION = {" + ", ".join(f'"{c}": ({m!r}, {s!r})' for c, (m, s) in cal.items()) + "}")


if __name__ == "__main__":
    main()
