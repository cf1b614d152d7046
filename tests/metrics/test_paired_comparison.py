"""paired_comparison on Predictions: the record's keys, edge cases, and the binary-task deltas."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from quantlens.metrics import Predictions, classification_metrics
from quantlens.metrics.paired import UNIT, compare_paired, paired_comparison
from quantlens.metrics.paired_f1 import paired_f1
from quantlens.metrics.proportions import PairedTable, newcombe_paired_interval

LEGACY_KEYS = {"n", "top1_delta", "top1_delta_ci", "confidence", "mcnemar_p", "significant", "float_only_correct",
               "quantized_only_correct", "prediction_agreement"}


def _preds(correct, classes: int = 3) -> Predictions:
    """Label 0 everywhere; a right sample puts its mass on class 0, a wrong one on class 1."""
    correct = np.asarray(correct, dtype=bool)
    probs = np.full((len(correct), classes), 0.05, dtype=np.float32)
    probs[correct, 0] = 0.9
    probs[~correct, 1] = 0.9
    return Predictions(np.arange(len(correct)), np.zeros(len(correct), np.int64), probs,
                       np.array([str(i) for i in range(len(correct))]))


def _binary(labels, positive_scores) -> Predictions:
    s = np.asarray(positive_scores, dtype=np.float32)
    return Predictions(np.arange(len(s)), np.asarray(labels), np.stack([1 - s, s], axis=1),
                       np.array([str(i) for i in range(len(s))]))


def test_no_disagreement_gives_a_non_degenerate_interval():
    # n = 600, 540 right and 60 wrong under both: Newcombe +-0.006042 (see test_paired_proportions)
    same = _preds([True] * 540 + [False] * 60)
    result = paired_comparison(same, same)
    assert result["top1_delta"] == 0.0
    assert result["top1_delta_ci"] == pytest.approx([-0.006042, 0.006042], abs=1e-6)
    assert result["mcnemar_p"] == 1.0 and result["mcnemar_midp"] == 1.0 and not result["significant"]
    assert result["prediction_agreement"] == 1.0 and result["positive_class"] is None
    assert LEGACY_KEYS <= set(result) and result["unit"] == UNIT == "fraction"
    assert "Newcombe" in result["top1_delta_method"] and "exact" in result["mcnemar_method"]
    assert set(result["deltas"]) == {"top1"}  # three classes: no binary deltas
    assert json.loads(json.dumps(result)) == result  # JSON-ready as written into metrics.json


def test_all_disagreements_one_way_and_the_counts():
    # a=80, b=0, c=10, d=10: the candidate fixes 10 samples and breaks none
    ref = _preds([True] * 80 + [False] * 10 + [False] * 10)
    cand = _preds([True] * 80 + [True] * 10 + [False] * 10)
    result = paired_comparison(ref, cand)
    assert result["top1_delta"] == pytest.approx(0.10)
    assert result["top1_delta_ci"] == pytest.approx([0.038549, 0.170170], abs=1e-6)
    assert result["mcnemar_p"] == pytest.approx(2 / 2**10) and result["significant"]
    assert (result["float_only_correct"], result["quantized_only_correct"]) == (0, 10)
    assert (result["both_correct"], result["both_wrong"]) == (80, 10)
    top1 = result["deltas"]["top1"]
    assert (top1["reference"], top1["candidate"], top1["delta"]) == pytest.approx((0.8, 0.9, 0.1))


@pytest.mark.parametrize(("ref", "cand", "expected"), [
    ([True], [True], (-0.793451, 0.793451)),  # n = 1
    ([True] * 600, [True] * 600, (-0.006362, 0.006362)),  # all right
    ([False] * 600, [False] * 600, (-0.006362, 0.006362)),  # all wrong
])
def test_single_sample_all_right_all_wrong(ref, cand, expected):
    result = paired_comparison(_preds(ref), _preds(cand))
    assert result["top1_delta"] == 0.0 and result["top1_delta_ci"] == pytest.approx(list(expected), abs=1e-6)
    assert result["mcnemar_p"] == 1.0


def test_mismatched_predictions_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        paired_comparison(_preds([True] * 5), _preds([True] * 4))
    shifted = _preds([True] * 5)
    shifted = Predictions(shifted.indices + 1, shifted.labels, shifted.probs, shifted.ids)
    with pytest.raises(ValueError, match="same samples"):
        paired_comparison(_preds([True] * 5), shifted)
    relabelled = _preds([True] * 5)
    relabelled = Predictions(relabelled.indices, relabelled.labels + 1, relabelled.probs, relabelled.ids)
    with pytest.raises(ValueError, match="same labels"):
        paired_comparison(_preds([True] * 5), relabelled)
    with pytest.raises(ValueError, match="same samples"):
        paired_comparison(_preds([True] * 5, classes=3), _preds([True] * 5, classes=2))
    with pytest.raises(ValueError, match="at least one sample"):
        paired_comparison(_preds([]), _preds([]))


@pytest.fixture
def binary_pair():
    rng = np.random.default_rng(7)
    labels = (rng.random(400) < 0.35).astype(np.int64)
    ref_scores = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.2, 400), 0.01, 0.99)
    cand_scores = np.clip(ref_scores + rng.normal(0, 0.12, 400), 0.01, 0.99)
    return _binary(labels, ref_scores), _binary(labels, cand_scores)


def test_binary_deltas_agree_with_the_unpaired_metrics(binary_pair):
    ref, cand = binary_pair
    result = paired_comparison(ref, cand, positive_class=1)
    deltas = result["deltas"]
    assert set(deltas) == {"top1", "sensitivity", "specificity", "auroc", "f1"} and result["positive_class"] == 1
    for model, side in ((ref, "reference"), (cand, "candidate")):
        m = classification_metrics(model, ["neg", "pos"], positive_class=1)
        assert deltas["sensitivity"][side] == pytest.approx(m["sensitivity"])
        assert deltas["specificity"][side] == pytest.approx(m["specificity"])
        assert deltas["auroc"][side] == pytest.approx(m["auroc"])
        assert deltas["f1"][side] == pytest.approx(f1_score(model.labels, model.predicted, pos_label=1))
    positive = ref.labels == 1
    # sensitivity: the same Newcombe interval on the positives only
    table = PairedTable.from_outcomes(ref.correct[positive], cand.correct[positive])
    assert deltas["sensitivity"]["n"] == int(positive.sum())
    assert deltas["sensitivity"]["ci"] == pytest.approx(list(newcombe_paired_interval(table)))
    assert "DeLong" in deltas["auroc"]["interval_method"] and "seed 0" in deltas["f1"]["interval_method"]
    for delta in deltas.values():
        low, high = delta["ci"]
        assert low <= delta["delta"] <= high and 0.0 <= delta["p_value"] <= 1.0


def test_positive_class_zero_swaps_sensitivity_and_specificity(binary_pair):
    ref, cand = binary_pair
    one, zero = compare_paired(ref, cand, positive_class=1), compare_paired(ref, cand, positive_class=0)
    assert zero.deltas["sensitivity"].reference == pytest.approx(one.deltas["specificity"].reference)
    assert zero.deltas["specificity"].candidate == pytest.approx(one.deltas["sensitivity"].candidate)
    assert zero.deltas["auroc"].delta == pytest.approx(one.deltas["auroc"].delta)  # p0 = 1 - p1
    with pytest.raises(ValueError, match="positive_class"):
        compare_paired(ref, cand, positive_class=2)


def test_f1_bootstrap_is_seeded_and_matches_index_resampling(binary_pair):
    ref, cand = binary_pair
    positive, ref_says, cand_says = ref.labels == 1, ref.predicted == 1, cand.predicted == 1
    first = paired_f1(positive, ref_says, cand_says, seed=3)
    assert paired_f1(positive, ref_says, cand_says, seed=3) == first  # same seed, same record
    assert paired_f1(positive, ref_says, cand_says, seed=4).ci != first.ci
    # The multinomial shortcut has the distribution of resampling sample indices: compare quantiles.
    rng = np.random.default_rng(11)
    idx = rng.integers(0, len(positive), size=(4000, len(positive)))  # (resamples, n)

    def f1(says):  # (resamples,) F1 of each resample, from the resampled rows
        tp = (positive[idx] & says[idx]).sum(1)
        return 2 * tp / (2 * tp + (~positive[idx] & says[idx]).sum(1) + (positive[idx] & ~says[idx]).sum(1))

    brute = f1(cand_says) - f1(ref_says)
    assert first.ci == pytest.approx(tuple(np.quantile(brute, [0.025, 0.975])), abs=0.01)


def test_f1_when_the_models_never_disagree():
    labels = np.array([1, 1, 0, 0, 1, 0])
    same = _binary(labels, [0.9, 0.2, 0.1, 0.7, 0.8, 0.3])
    f1 = compare_paired(same, same).deltas["f1"]
    assert f1.delta == 0.0 and f1.p_value == 1.0 and f1.ci == (0.0, 0.0) and "never disagree" in f1.note


def test_subsets_without_positives_or_negatives_are_undefined_not_errors():
    only_negatives = _binary([0, 0, 0], [0.2, 0.6, 0.1])
    deltas = paired_comparison(only_negatives, only_negatives)["deltas"]
    assert deltas["sensitivity"]["delta"] is None and deltas["sensitivity"]["n"] == 0
    assert deltas["auroc"]["delta"] is None and "positives" in deltas["auroc"]["note"]
    assert deltas["specificity"]["n"] == 3 and deltas["specificity"]["ci"][1] > deltas["specificity"]["ci"][0]
