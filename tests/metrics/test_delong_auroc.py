"""DeLong's paired AUROC comparison: a hand-computed case, the O(mk) definition, scikit-learn's AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from quantlens.metrics.delong import auroc_components, delong_paired


def _by_definition(positive, ref, cand):
    """Var(AUC_cand - AUC_ref) straight from DeLong et al. (1988): the psi matrix, O(m k)."""
    def components(scores):
        x, y = scores[positive], scores[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # (m, k)
        return psi.mean(axis=1), psi.mean(axis=0)  # V10 (m,), V01 (k,)

    (v10_r, v01_r), (v10_c, v01_c) = components(ref), components(cand)
    s10 = np.cov(np.stack([v10_r, v10_c]))  # (2, 2), ddof = 1
    s01 = np.cov(np.stack([v01_r, v01_c]))
    s = s10 / len(v10_r) + s01 / len(v01_r)
    return v10_r.mean(), v10_c.mean(), s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_delong_by_hand():
    # 3 positives, 2 negatives. Reference: positives 0.9 0.8 0.4, negatives 0.3 0.6.
    #   V10 = [1, 1, 1/2] (0.4 beats 0.3 only), V01 = [3/3, 2/3]; AUC_ref = 5/6
    # Candidate: positives 0.9 0.5 0.7, negatives 0.2 0.8.
    #   V10 = [1, 1/2, 1/2], V01 = [3/3, 1/3]; AUC_cand = 2/3; delta = -1/6
    # V10 differences (cand - ref) = [0, -1/2, 0]: sample variance (ddof 1) = 1/12, / m=3 -> 1/36
    # V01 differences = [0, -1/3]: sample variance = 1/18, / k=2 -> 1/36
    # Var = 1/36 + 1/36 = 1/18, se = 0.235702, z = (-1/6) / 0.235702 = -0.707107 (-1/sqrt 2)
    # p = 2 (1 - Phi(0.707107)) = 0.479500; CI = -1/6 -+ 1.959964 * 0.235702 = (-0.628634, 0.295301)
    positive = np.array([True, True, True, False, False])
    ref = np.array([0.9, 0.8, 0.4, 0.3, 0.6])
    cand = np.array([0.9, 0.5, 0.7, 0.2, 0.8])
    result = delong_paired(positive, ref, cand)
    assert result.reference_auroc == pytest.approx(5 / 6) and result.candidate_auroc == pytest.approx(2 / 3)
    assert result.delta == pytest.approx(-1 / 6)
    assert result.variance == pytest.approx(1 / 18)
    assert result.p_value == pytest.approx(2 * norm.sf(1 / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.479500, abs=1e-6)
    assert result.ci == pytest.approx((-0.628634, 0.295301), abs=1e-6)


def test_components_with_ties_match_the_definition():
    # ties between a positive and a negative count 1/2
    v10, v01 = auroc_components(np.array([0.5, 0.7]), np.array([0.5, 0.1]))
    assert v10.tolist() == [0.75, 1.0] and v01.tolist() == [0.75, 1.0]  # both mean 7/8


@pytest.mark.parametrize("seed", range(5))
def test_fast_delong_equals_the_definition_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 80
    positive = rng.random(n) < 0.4
    # rounded to 1 decimal: plenty of ties, within and across classes
    ref = np.round(positive * 0.8 + rng.normal(0, 0.5, n), 1)
    cand = np.round(ref + rng.normal(0, 0.3, n), 1)
    result = delong_paired(positive, ref, cand)
    auc_r, auc_c, variance = _by_definition(positive, ref, cand)
    assert result.reference_auroc == pytest.approx(roc_auc_score(positive, ref), abs=1e-12)
    assert result.candidate_auroc == pytest.approx(roc_auc_score(positive, cand), abs=1e-12)
    assert (result.reference_auroc, result.candidate_auroc) == pytest.approx((auc_r, auc_c), abs=1e-12)
    assert result.variance == pytest.approx(variance, rel=1e-10)
    low, high = result.ci
    assert low < result.delta < high


def test_identical_scores_and_too_few_samples():
    positive = np.array([True, True, False, False])
    scores = np.array([0.9, 0.4, 0.5, 0.1])
    same = delong_paired(positive, scores, scores)
    assert same.delta == 0.0 and same.variance == 0.0 and same.p_value == 1.0 and "rank" in same.note
    assert same.ci is None  # no uncertainty estimate, so no interval (not a point one)
    # AUROC 1 against constant scores (AUROC 1/2): every component moves by 1/2, variance 0 again
    boundary = delong_paired(positive, np.array([0.9, 0.8, 0.5, 0.1]), np.full(4, 0.3))
    assert boundary.delta == -0.5 and boundary.ci is None and boundary.p_value is None
    one_positive = delong_paired(np.array([True, False, False]), np.array([0.9, 0.2, 0.1]), np.array([0.1, 0.2, 0.3]))
    assert one_positive.candidate_auroc == 0.0 and one_positive.ci is None and one_positive.p_value is None
    with pytest.raises(ValueError, match="positives and negatives"):
        delong_paired(np.array([True, True]), np.array([0.1, 0.2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="one length"):
        delong_paired(positive, scores, scores[:3])
