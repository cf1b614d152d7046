"""Is a quantized model's accuracy different from the float model's? Paired statistics.

Both models classify the same samples, so the comparison is paired: only the samples on which
exactly one of them is right (the discordant pairs) carry information about the difference.

* top-1 (and, for binary tasks, sensitivity and specificity, which are top-1 on the positives /
  the negatives): Newcombe's (1998) method-10 hybrid score interval for the difference of
  paired proportions, and McNemar's exact conditional test (see `proportions.py`);
* AUROC (binary tasks): DeLong et al.'s (1988) paired test and interval (see `delong.py`);
* F1 of the positive class (binary tasks): seeded paired bootstrap interval and seeded paired
  permutation test (see `paired_f1.py`).

Every delta is candidate minus reference and every value is a fraction in [0, 1] (deltas in
[-1, 1]): the record says so in its "unit" field; tables show deltas x100 as percentage points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quantlens.metrics.classification import Predictions
from quantlens.metrics.delong import DELONG, delong_paired
from quantlens.metrics.paired_f1 import F1_BOOTSTRAP, F1_PERMUTATION, paired_f1
from quantlens.metrics.proportions import (
    MCNEMAR_EXACT,
    NEWCOMBE_PAIRED,
    McNemarResult,
    PairedTable,
    mcnemar_test,
    newcombe_paired_interval,
)

UNIT = "fraction"  # of every value, delta and interval in a record; x100 = percentage points


@dataclass(frozen=True)
class PairedDelta:
    """One metric of both models on the same `n` samples (for sensitivity: the positives).

    `reference`, `candidate` and `ci` are fractions; None where the metric is undefined on
    these samples (`note` says why). `p_value` tests "no difference" with `test`.
    """

    metric: str
    n: int
    reference: float | None
    candidate: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    interval_method: str
    test: str | None
    mid_p: float | None = None  # McNemar mid-p, beside the exact p, for proportion deltas
    note: str = ""

    @property
    def delta(self) -> float | None:
        return None if self.reference is None or self.candidate is None else self.candidate - self.reference

    def to_dict(self) -> dict:
        return {"metric": self.metric, "n": self.n, "reference": self.reference, "candidate": self.candidate,
                "delta": self.delta, "ci": None if self.ci is None else [float(v) for v in self.ci],
                "p_value": self.p_value, "mid_p": self.mid_p, "interval_method": self.interval_method,
                "test": self.test, "note": self.note}


def proportion_delta(metric: str, reference_right: np.ndarray, candidate_right: np.ndarray,
                     confidence: float) -> tuple[PairedDelta, PairedTable | None, McNemarResult | None]:
    """Paired difference of two proportions on the same samples ((N,) bools; N may be 0)."""
    table = PairedTable.from_outcomes(reference_right, candidate_right)
    if table.n == 0:
        return PairedDelta(metric, 0, None, None, None, None, NEWCOMBE_PAIRED, MCNEMAR_EXACT,
                           note="no samples in this subset"), None, None
    mcnemar = mcnemar_test(table.only_reference, table.only_candidate)
    return PairedDelta(metric, table.n, table.reference_rate, table.candidate_rate,
                       newcombe_paired_interval(table, confidence), mcnemar.exact_p, NEWCOMBE_PAIRED,
                       MCNEMAR_EXACT, mid_p=mcnemar.mid_p), table, mcnemar


def _auroc_delta(positive: np.ndarray, reference: np.ndarray, candidate: np.ndarray, confidence: float) -> PairedDelta:
    m, k = int(positive.sum()), int((~positive).sum())
    if m == 0 or k == 0:
        return PairedDelta("auroc", m + k, None, None, None, None, DELONG, DELONG,
                           note=f"{m} positives and {k} negatives: AUROC needs both")
    result = delong_paired(positive, reference, candidate, confidence)
    return PairedDelta("auroc", m + k, result.reference_auroc, result.candidate_auroc, result.ci, result.p_value,
                       DELONG, DELONG, note=result.note)


@dataclass(frozen=True)
class PairedComparison:
    """The candidate against the reference on the same samples; `deltas` by metric name
    ("top1", and for binary tasks "sensitivity", "specificity", "auroc", "f1")."""

    confidence: float
    table: PairedTable  # top-1 outcomes
    mcnemar: McNemarResult
    prediction_agreement: float
    positive_class: int | None  # index of the positive class of a binary task, else None
    deltas: dict[str, PairedDelta] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready record. The flat top1_* / mcnemar_* keys are those readers used before
        `deltas` existed; they repeat deltas["top1"]."""
        top1 = self.deltas["top1"]
        return {
            "n": self.table.n, "confidence": self.confidence, "unit": UNIT,
            "top1_delta": top1.delta, "top1_delta_ci": list(top1.ci), "top1_delta_method": top1.interval_method,
            "mcnemar_p": self.mcnemar.exact_p, "mcnemar_midp": self.mcnemar.mid_p, "mcnemar_method": MCNEMAR_EXACT,
            "significant": self.mcnemar.exact_p < 1 - self.confidence,
            "float_only_correct": self.table.only_reference, "quantized_only_correct": self.table.only_candidate,
            "both_correct": self.table.both, "both_wrong": self.table.neither,
            "prediction_agreement": self.prediction_agreement, "positive_class": self.positive_class,
            "deltas": {name: delta.to_dict() for name, delta in self.deltas.items()},
        }


def compare_paired(reference: Predictions, candidate: Predictions, *, confidence: float = 0.95,
                   positive_class: int = 1, resamples: int = 5000, seed: int = 0) -> PairedComparison:
    """Paired deltas of `candidate` vs `reference` (same samples, same order, same labels).

    Binary tasks (probabilities of 2 classes) also get sensitivity, specificity, AUROC and F1,
    with `positive_class` the class index treated as positive (as in classification_metrics);
    `resamples` and `seed` drive the F1 bootstrap and permutation test.
    """
    if reference.probs.shape != candidate.probs.shape or not np.array_equal(reference.indices, candidate.indices):
        raise ValueError(f"paired comparison needs predictions on the same samples in the same order, got "
                         f"{len(reference.indices)} and {len(candidate.indices)} samples with probabilities "
                         f"{reference.probs.shape} and {candidate.probs.shape}")
    if not np.array_equal(reference.labels, candidate.labels):
        raise ValueError("paired comparison needs the same labels on both sides")
    if len(reference.labels) == 0:
        raise ValueError("paired comparison needs at least one sample")
    top1, table, mcnemar = proportion_delta("top1", reference.correct, candidate.correct, confidence)
    deltas = {"top1": top1}
    num_classes = reference.probs.shape[1]
    binary = num_classes == 2
    if binary:
        if positive_class not in (0, 1):
            raise ValueError(f"positive_class must be 0 or 1 in a binary task, got {positive_class}")
        positive = reference.labels == positive_class  # (N,)
        ref_says, cand_says = reference.predicted == positive_class, candidate.predicted == positive_class
        # Sensitivity is top-1 on the positives, specificity top-1 on the negatives.
        deltas["sensitivity"] = proportion_delta("sensitivity", ref_says[positive], cand_says[positive], confidence)[0]
        deltas["specificity"] = proportion_delta("specificity", ~ref_says[~positive], ~cand_says[~positive],
                                                 confidence)[0]
        deltas["auroc"] = _auroc_delta(positive, reference.probs[:, positive_class].astype(np.float64),
                                       candidate.probs[:, positive_class].astype(np.float64), confidence)
        f1 = paired_f1(positive, ref_says, cand_says, confidence=confidence, resamples=resamples, seed=seed)
        deltas["f1"] = PairedDelta("f1", len(positive), f1.reference, f1.candidate, f1.ci, f1.p_value,
                                   f"{F1_BOOTSTRAP}, {resamples} resamples, seed {seed}",
                                   f"{F1_PERMUTATION}, {resamples} permutations, seed {seed}",
                                   note="" if (ref_says != cand_says).any() else
                                   "the models never disagree on a positive call: the bootstrap interval is a point")
    agreement = float((reference.predicted == candidate.predicted).mean())
    return PairedComparison(confidence, table, mcnemar, agreement, positive_class if binary else None, deltas)


def paired_comparison(reference: Predictions, candidate: Predictions, *, confidence: float = 0.95,
                      positive_class: int = 1, resamples: int = 5000, seed: int = 0) -> dict:
    """`compare_paired(...).to_dict()`: the JSON-ready record stored with each simulated format."""
    return compare_paired(reference, candidate, confidence=confidence, positive_class=positive_class,
                          resamples=resamples, seed=seed).to_dict()
