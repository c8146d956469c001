"""Set-level non-linear rank aggregation (AZ-NAS, Lee & Ham CVPR 2024, Eq. 9), torch-free.

For candidates i = 1..N and proxies m, with rank_m(i) in 1..N ascending in the proxy's value
(the best candidate has rank N):

    aggregate(i) = sum_m log(rank_m(i) / N)

so a candidate must be good in every proxy to score high (one bad rank costs a large negative log).
A candidate without a value for a proxy (its proxy errored, a disconnected cell) takes rank 1 (worst)
for that proxy. Ties take the average rank. Source: the paper and cvlab-yonsei/AZ-NAS (the search
scripts rank each of expressivity, progressivity, trainability and complexity with
``stats.rankdata`` and sum ``np.log(rank / N)``). The value depends on the whole set, so it is
for ranking a given set (``initscore.search.top_k(..., proxy="az_nas")``, the benchmark), not a
per-architecture score; ``ensemble`` is the per-architecture counterpart.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

AZ_NAS_INPUTS = ("az_expressivity", "az_progressivity", "az_trainability", "flops")


def _ranks(values: Sequence[float | None]) -> list[float]:
    """Average ranks 1..N ascending; None/NaN values share the lowest ranks."""
    n = len(values)
    key = [(-math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for v in values]
    order = sorted(range(n), key=lambda i: key[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and key[order[j + 1]] == key[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def log_rank_aggregate(columns: Mapping[str, Sequence[float | None]]) -> list[float]:
    """sum_m log(rank_m / N) per candidate; columns map proxy -> values (None = missing, ranked worst)."""
    cols = list(columns.values())
    if not cols:
        raise ValueError("no proxy to aggregate")
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError("every proxy needs one value per candidate")
    total = [0.0] * n
    for c in cols:
        for i, r in enumerate(_ranks(c)):
            total[i] += math.log(r / n)
    return total
