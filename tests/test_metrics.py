"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens.metrics import Predictions, classification_metrics, expected_calibration_error


def _pred(labels, probs) -> Predictions:
    labels = np.asarray(labels)
    return Predictions(np.arange(len(labels)), labels, np.asarray(probs, dtype=np.float32),
                       np.asarray([str(i) for i in range(len(labels))]))


def test_binary_metrics_by_hand():
    # labels 1,1,1,0,0 ; predicted 1,1,0,0,1 -> TP=2 FN=1 TN=1 FP=1
    p1 = [0.9, 0.8, 0.4, 0.3, 0.6]
    m = classification_metrics(_pred([1, 1, 1, 0, 0], [[1 - p, p] for p in p1]), ["neg", "pos"])
    assert m["top1"] == pytest.approx(0.6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(1 / 2)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    # AUROC: positives {0.9, 0.8, 0.4} vs negatives {0.3, 0.6}: pairs won 2+2+1 = 5 of 6
    assert m["auroc"] == pytest.approx(5 / 6)
    assert m["top5"] is None and m["positive_class"] == "pos"
    assert m["mean_confidence"] == pytest.approx(np.mean([0.9, 0.8, 0.6, 0.7, 0.6]))


def test_multiclass_top5_and_ovr_auroc():
    rng = np.random.default_rng(0)
    labels = np.arange(70) % 7
    logits = rng.normal(size=(70, 7))
    logits[np.arange(70), labels] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(_pred(labels, probs), [str(i) for i in range(7)])
    top5 = np.mean([labels[i] in np.argsort(-probs[i])[:5] for i in range(70)])
    assert m["top5"] == pytest.approx(top5)
    assert 0.5 < m["auroc"] < 1.0 and len(m["per_class"]) == 7 and "sensitivity" not in m


def test_ece_by_hand():
    # Two samples at confidence 0.9 (one right, one wrong) and two at 0.6 (both right).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(expected)


def test_auroc_undefined_with_one_class():
    m = classification_metrics(_pred([1, 1], [[0.2, 0.8], [0.6, 0.4]]), ["a", "b"])
    assert m["auroc"] is None


def test_predictions_round_trip(tmp_path):
    p = _pred([0, 1], [[0.7, 0.3], [0.1, 0.9]])
    p.save(tmp_path / "p.npz")
    q = Predictions.load(tmp_path / "p.npz")
    assert np.array_equal(p.probs, q.probs) and list(q.ids) == ["0", "1"]
