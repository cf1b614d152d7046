"""Two correlated ROC curves on the same samples: DeLong's paired test and interval for ΔAUROC.

E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or more
correlated receiver operating characteristic curves: a nonparametric approach", Biometrics
44:837-845 (1988). With m positives X_i and k negatives Y_j scored by model r, and
psi(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise:

    AUC_r        = (1 / mk) sum_i sum_j psi(X_i, Y_j)          (the Mann-Whitney statistic)
    V10_r(X_i)   = (1 / k) sum_j psi(X_i, Y_j)                 structural components, (m,)
    V01_r(Y_j)   = (1 / m) sum_i psi(X_i, Y_j)                                        (k,)
    S10, S01     = 2x2 sample covariances (ddof=1) of (V10_ref, V10_cand), (V01_ref, V01_cand)
    Var(AUC_cand - AUC_ref) = [1, -1] (S10 / m + S01 / k) [1, -1]^T

The test is z = Δ / sqrt(Var), two-sided normal p; the interval is Δ ± z_{(1+c)/2} sqrt(Var).
The components come from midranks in O(N log N) (X. Sun and W. Xu, "Fast implementation of
DeLong's algorithm for comparing the areas under correlated receiver operating characteristic
curves", IEEE Signal Processing Letters 21:1389-1393, 2014): the midrank of X_i among all
samples minus its midrank among the positives counts the negatives below it (ties as 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from quantlens.metrics.proportions import normal_quantile

DELONG = "DeLong et al. (1988) paired test and interval for two correlated ROC curves"


def auroc_components(positive_scores: np.ndarray, negative_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components (V10 (m,), V01 (k,)) of one model's scores; their means are the AUROC."""
    x = np.asarray(positive_scores, dtype=np.float64)
    y = np.asarray(negative_scores, dtype=np.float64)
    m, k = x.size, y.size
    if m == 0 or k == 0:
        raise ValueError(f"an AUROC needs positives and negatives, got {m} and {k}")
    combined = rankdata(np.concatenate([x, y]))  # (m + k,) midranks, ties averaged
    negatives_below_x = combined[:m] - rankdata(x)  # (m,) #{Y < X_i} + #{Y = X_i} / 2
    positives_below_y = combined[m:] - rankdata(y)  # (k,) #{X < Y_j} + #{X = Y_j} / 2
    return negatives_below_x / k, 1.0 - positives_below_y / m


@dataclass(frozen=True)
class DeLongResult:
    reference_auroc: float
    candidate_auroc: float
    variance: float | None  # Var(AUC_cand - AUC_ref); None with fewer than 2 positives or negatives
    ci: tuple[float, float] | None
    p_value: float | None
    note: str = ""

    @property
    def delta(self) -> float:
        return self.candidate_auroc - self.reference_auroc


def delong_paired(labels_positive: np.ndarray, reference_scores: np.ndarray, candidate_scores: np.ndarray,
                  confidence: float = 0.95) -> DeLongResult:
    """DeLong's comparison of two models' AUROCs on the same samples.

    `labels_positive` (N,) bool marks the positives; the scores (N,) are each model's score
    for the positive class (higher = more positive).
    """
    positive = np.asarray(labels_positive, dtype=bool)
    ref, cand = np.asarray(reference_scores, np.float64), np.asarray(candidate_scores, np.float64)
    if not (positive.ndim == 1 and positive.shape == ref.shape == cand.shape):
        raise ValueError(f"labels and both score arrays must be 1-D of one length, got "
                         f"{positive.shape}, {ref.shape}, {cand.shape}")
    v10_ref, v01_ref = auroc_components(ref[positive], ref[~positive])
    v10_cand, v01_cand = auroc_components(cand[positive], cand[~positive])
    auc_ref, auc_cand = float(v10_ref.mean()), float(v10_cand.mean())
    m, k = v10_ref.size, v01_ref.size
    if m < 2 or k < 2:
        return DeLongResult(auc_ref, auc_cand, None, None, None,
                            note=f"{m} positives and {k} negatives: a covariance needs at least 2 of each")
    # Var(a - b) = Var(a) + Var(b) - 2 Cov(a, b) = the variance of the per-sample difference.
    variance = float(np.var(v10_cand - v10_ref, ddof=1) / m + np.var(v01_cand - v01_ref, ddof=1) / k)
    delta = auc_cand - auc_ref
    if variance <= 0.0:
        # Every positive's (and every negative's) component moved by the same amount: identical
        # rankings, or both models at a boundary (AUROC 1 vs constant scores). The estimate says
        # nothing about the uncertainty then, so no interval rather than a point one; p = 1 only
        # when there is no difference to test.
        return DeLongResult(auc_ref, auc_cand, 0.0, None, 1.0 if delta == 0.0 else None,
                            note="DeLong variance is 0 (identical rankings, or AUROCs at a boundary): "
                                 "no interval")
    se = math.sqrt(variance)
    half = normal_quantile(confidence) * se
    p_value = float(2.0 * norm.sf(abs(delta) / se))
    return DeLongResult(auc_ref, auc_cand, variance, (max(-1.0, delta - half), min(1.0, delta + half)), p_value)
