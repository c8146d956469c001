"""EPE-NAS (Lopes et al., ICANN 2021) in NASLib's form: class-wise correlation of input Jacobians.

With J the per-sample input Jacobians of sum(logits) (the ``input_jacobian`` artifact that jacob_cov
also reads, training-mode forward) and k = 1e-5:

    s_c = sum_ij log(|corrcoef(J_c)|_ij + k)       J_c = rows of J whose label is c
    epe_nas = sum_c |s_c|                          (at most 100 classes)
    epe_nas = sum_c sum_c' |s_c - s_c'| / C_seen   (more than 100 classes; each s_c first divided by n_c)

A class with one sample has corrcoef = 1 (numpy returns the scalar 1.0 for one row), so it adds
|log(1 + k)|. Higher = predicted better (less correlated Jacobians within a class).

Source: NASLib naslib/predictors/utils/pruners/measures/epe_nas.py (``eval_score_perclass``),
itself from the authors' repository (VascoLopes/EPE-NAS search.py). Differences: float64 here
(NASLib: float32 Jacobian, float64 corrcoef); a NaN correlation (a sample with a constant
Jacobian) is an error for this architecture, where NASLib returns NaN; the number of classes
is the width of the logits, as NASLib's ``y.shape[-1]``.
"""
from __future__ import annotations

import numpy as np

from initscore.errors import NonFiniteError

_K = 1e-5


def epe_nas_score(jac: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    jac = np.asarray(jac, dtype=np.float64).reshape(len(jac), -1)
    labels = np.asarray(labels)
    per_class: dict[int, float] = {}
    for c in dict.fromkeys(labels.tolist()):  # classes in order of first appearance, as NASLib's dict
        rows = jac[labels == c]
        if len(rows) == 1:
            corr = np.ones((1, 1))
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.corrcoef(rows)
        s = float(np.sum(np.log(np.abs(corr) + _K)))
        if n_classes > 100:
            s /= len(corr)
        per_class[c] = s
    vals = np.array(list(per_class.values()))
    if not np.all(np.isfinite(vals)):
        raise NonFiniteError("proxy 'epe_nas': a class's Jacobian correlation is not finite (a sample has a constant Jacobian)")
    if n_classes <= 100:
        return float(np.sum(np.abs(vals)))
    return float(np.abs(vals[:, None] - vals[None, :]).sum() / len(vals))
