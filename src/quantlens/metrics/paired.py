"""Is a quantized model's accuracy different from the float model's? Paired statistics.

Both models classify the same samples, so the comparison is paired: only the samples on which
exactly one of them is right (the discordant pairs) carry information. McNemar's exact test
gives the p-value of "same accuracy"; a paired bootstrap gives a confidence interval for the
difference in top-1; the agreement rate says how often the two predict the same class.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from quantlens.metrics.classification import Predictions


def paired_comparison(reference: Predictions, candidate: Predictions, *, confidence: float = 0.95,
                      resamples: int = 5000, seed: int = 0) -> dict:
    if not np.array_equal(reference.indices, candidate.indices):
        raise ValueError("paired comparison needs predictions on the same samples in the same order")
    ref_ok, cand_ok = reference.correct, candidate.correct
    n = len(ref_ok)
    only_ref = int((ref_ok & ~cand_ok).sum())  # float right, quantized wrong
    only_cand = int((~ref_ok & cand_ok).sum())
    discordant = only_ref + only_cand
    p_value = float(binomtest(only_cand, discordant, 0.5).pvalue) if discordant else 1.0
    # The per-sample difference takes the values -1, 0, +1, so resampling n samples with
    # replacement is exactly a multinomial draw of the three counts: O(resamples), not O(n x resamples).
    low = high = delta = 0.0
    if n:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, [only_ref / n, 1 - discordant / n, only_cand / n], size=resamples)
        boot = (counts[:, 2] - counts[:, 0]) / n
        alpha = (1 - confidence) / 2
        low, high = np.quantile(boot, [alpha, 1 - alpha])
        delta = (only_cand - only_ref) / n
    return {
        "n": n,
        "top1_delta": float(delta),
        "top1_delta_ci": [float(low), float(high)],
        "confidence": confidence,
        "mcnemar_p": p_value,
        "significant": p_value < 1 - confidence,
        "float_only_correct": only_ref,
        "quantized_only_correct": only_cand,
        "prediction_agreement": float((reference.predicted == candidate.predicted).mean()) if n else 1.0,
    }
