"""Fidelity of a candidate's outputs to a reference's on the same samples (agreement, KL)."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens.metrics.classification import Predictions
from quantlens.metrics.fidelity import fidelity, mean_kl, top1_agreement


def _predictions(probs) -> Predictions:
    probs = np.asarray(probs, np.float32)
    n = len(probs)
    return Predictions(np.arange(n), np.zeros(n, np.int64), probs, np.array([str(i) for i in range(n)]))


def test_identical_outputs_agree_fully_with_zero_kl():
    p = _predictions([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert fidelity(p, p) == {"agreement": 1.0, "kl": pytest.approx(0.0, abs=1e-12)}


def test_kl_matches_the_definition_in_nats():
    ref = _predictions([[0.5, 0.5], [0.9, 0.1]])
    cand = _predictions([[0.25, 0.75], [0.9, 0.1]])
    expected = (0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)) / 2  # the second sample contributes 0
    assert mean_kl(ref, cand) == pytest.approx(expected, rel=1e-6)
    assert top1_agreement(ref, cand) == 0.5


def test_a_zero_probability_keeps_kl_finite():
    assert np.isfinite(mean_kl(_predictions([[0.5, 0.5]]), _predictions([[1.0, 0.0]])))


def test_different_samples_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        top1_agreement(_predictions([[1.0, 0.0]]), _predictions([[1.0, 0.0], [0.0, 1.0]]))
