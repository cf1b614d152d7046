"""ΔF1 of the positive class between two models on the same samples: paired bootstrap interval
and paired permutation test, both seeded.

F1 is a ratio of counts, 2 TP / (2 TP + FP + FN), with no closed-form paired interval, so it is
resampled. Each sample falls in one of 8 cells (label positive?, reference says positive?,
candidate says positive?), and F1 of either model depends on the 8 cell counts only, so:

* bootstrap (Efron & Tibshirani 1993, percentile interval): resampling n samples with
  replacement is exactly one multinomial draw of the 8 counts with the observed cell
  frequencies, O(resamples) whatever n;
* permutation test (paired "approximate randomization", Noreen 1989): under "the two models
  are exchangeable" each sample's two predictions may be swapped with probability 1/2; only
  samples where they differ change anything, so each resample draws, per label, how many of
  the (ref +, cand -) samples and of the (ref -, cand +) samples swap, from Binomial(count, 1/2).
  p = (1 + #{|Δ*| >= |Δ|}) / (1 + resamples) (Phipson & Smyth 2010: never 0 from a finite draw).

Like every bootstrap, the interval is [0, 0] when the two models never disagree on the
positive predictions; the record says so (the accuracy-type deltas use score intervals instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F1_BOOTSTRAP = "paired percentile bootstrap (multinomial over the 8 label x prediction cells)"
F1_PERMUTATION = "paired permutation test (predictions swapped per sample with probability 1/2)"
_TOLERANCE = 1e-12  # |Δ*| >= |Δ| compared with this slack: equal F1s computed from different counts


def _cells(positive: np.ndarray, ref_pos: np.ndarray, cand_pos: np.ndarray) -> np.ndarray:
    """(8,) counts indexed by 4 * label + 2 * reference + candidate (each 0/1)."""
    index = 4 * positive.astype(np.int64) + 2 * ref_pos.astype(np.int64) + cand_pos.astype(np.int64)
    return np.bincount(index, minlength=8)


def _f1(table: np.ndarray) -> np.ndarray:
    """F1 from (..., label, prediction) counts; 0 when 2TP + FP + FN = 0 (scikit-learn's
    zero_division=0, as in classification_metrics)."""
    tp, fn, fp = table[..., 1, 1], table[..., 1, 0], table[..., 0, 1]
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _f1_from_cells(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 of the reference and of the candidate from cell counts (..., 8)."""
    c = counts.reshape(*counts.shape[:-1], 2, 2, 2).astype(np.float64)  # (..., label, ref, cand)
    return _f1(c.sum(axis=-1)), _f1(c.sum(axis=-2))  # each model's (..., label, prediction) table


@dataclass(frozen=True)
class PairedF1:
    reference: float
    candidate: float
    ci: tuple[float, float]
    p_value: float
    resamples: int
    seed: int

    @property
    def delta(self) -> float:
        return self.candidate - self.reference


def paired_f1(positive: np.ndarray, reference_says_positive: np.ndarray, candidate_says_positive: np.ndarray, *,
              confidence: float = 0.95, resamples: int = 5000, seed: int = 0) -> PairedF1:
    """F1 of the positive class for both models, with the interval and p-value described above.

    All inputs are (N,) bools on the same samples. One generator seeded with `seed` draws the
    bootstrap, then the permutations, so the same inputs always give the same record.
    """
    arrays = [np.asarray(a, dtype=bool) for a in (positive, reference_says_positive, candidate_says_positive)]
    if arrays[0].ndim != 1 or len({a.shape for a in arrays}) != 1 or arrays[0].size == 0:
        raise ValueError(f"paired F1 needs three 1-D boolean arrays of one non-zero length, "
                         f"got {[a.shape for a in arrays]}")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need resamples >= 1 and 0 < confidence < 1, got {resamples}, {confidence}")
    counts = _cells(*arrays)
    n = int(counts.sum())
    f1_ref, f1_cand = (float(v) for v in _f1_from_cells(counts))
    delta = f1_cand - f1_ref
    rng = np.random.default_rng(seed)

    boot = rng.multinomial(n, counts / n, size=resamples)  # (resamples, 8)
    ref_b, cand_b = _f1_from_cells(boot)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(cand_b - ref_b, [tail, 1.0 - tail])

    permuted = np.broadcast_to(counts, (resamples, 8)).copy()
    for label in (0, 1):
        ref_only, cand_only = 4 * label + 2, 4 * label + 1  # cells (ref +, cand -) and (ref -, cand +)
        to_cand = rng.binomial(counts[ref_only], 0.5, size=resamples)  # swapped: now (ref -, cand +)
        to_ref = rng.binomial(counts[cand_only], 0.5, size=resamples)
        permuted[:, ref_only] += to_ref - to_cand
        permuted[:, cand_only] += to_cand - to_ref
    ref_p, cand_p = _f1_from_cells(permuted)
    extreme = int((np.abs(cand_p - ref_p) >= abs(delta) - _TOLERANCE).sum())
    p_value = (1 + extreme) / (1 + resamples)
    return PairedF1(f1_ref, f1_cand, (float(low), float(high)), float(p_value), resamples, seed)
