"""`compare`: two evaluations on the same samples -> paired statistics (quantlens.metrics.paired).

The samples are matched by the fingerprints of their inputs, so a DataLoader that gave them in
another order still pairs each sample with itself; results on different samples are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlens.api.evaluation import EvaluationResult
from quantlens.errors import ConfigError, DataError
from quantlens.metrics.classification import Predictions
from quantlens.metrics.paired import PairedComparison, PairedDelta, compare_paired


@dataclass(frozen=True)
class ComparisonResult:
    """The candidate (b) against the reference (a), sample by sample. Deltas are candidate minus
    reference; `*_points` are percentage points (fractions x 100).

    paired: the full record (`deltas` by metric: top1, and for binary tasks sensitivity,
        specificity, auroc, f1; the 2x2 table; McNemar exact and mid-p).
    reordered: True when b's samples came in another order than a's and were matched by input.
    """

    paired: PairedComparison
    reordered: bool = False

    @property
    def n(self) -> int:
        return self.paired.table.n

    @property
    def top1(self) -> PairedDelta:
        return self.paired.deltas["top1"]

    @property
    def top1_delta_points(self) -> float:
        return 100.0 * float(self.top1.delta)

    @property
    def top1_ci_points(self) -> tuple[float, float]:
        """Newcombe's (1998) paired interval of the top-1 delta, in points."""
        low, high = self.top1.ci
        return 100.0 * low, 100.0 * high

    @property
    def mcnemar_p(self) -> float:
        """McNemar's exact two-sided p-value for "same top-1 accuracy"."""
        return self.paired.mcnemar.exact_p

    @property
    def agreement(self) -> float:
        """Fraction of samples on which both predict the same class."""
        return self.paired.prediction_agreement

    @property
    def significant(self) -> bool:
        return self.mcnemar_p < 1 - self.paired.confidence

    def to_dict(self) -> dict:
        return {**self.paired.to_dict(), "reordered": self.reordered}

    def __str__(self) -> str:
        low, high = self.top1_ci_points
        return (f"top-1 {100 * self.top1.reference:.2f}% -> {100 * self.top1.candidate:.2f}%: "
                f"{self.top1_delta_points:+.2f} points [{self.paired.confidence:.0%} CI {low:+.2f}, {high:+.2f}], "
                f"McNemar p = {self.mcnemar_p:.3g}, agreement {self.agreement:.2%} (n = {self.n})")


def _aligned(a: Predictions, b: Predictions) -> tuple[Predictions, Predictions, bool]:
    """Both predictions over the same samples in one order, and whether b had to be reordered;
    a DataError when they are not the same samples (inputs and labels)."""
    if np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels):
        return a, b, False
    order_a, order_b = np.lexsort((a.labels, a.ids)), np.lexsort((b.labels, b.ids))
    if len(a.ids) == len(b.ids) and np.array_equal(a.ids[order_a], b.ids[order_b]) \
            and np.array_equal(a.labels[order_a], b.labels[order_b]):
        # Sorted by (input, label), both: the k-th sample of one is the k-th of the other (identical
        # inputs with identical labels are interchangeable: a model's output depends on the input only).
        n = len(a.ids)

        def sorted_by(p: Predictions, order: np.ndarray) -> Predictions:
            return Predictions(np.arange(n), p.labels[order], p.probs[order], p.ids[order])

        return sorted_by(a, order_a), sorted_by(b, order_b), True
    common = len(np.intersect1d(a.ids, b.ids))
    same_inputs = common == len(a.ids) == len(b.ids)
    raise DataError(f"compare: the results are on different samples ({len(a.ids)} and {len(b.ids)} samples, "
                    f"{common} inputs in common" + (", with other labels" if same_inputs else "")
                    + "); evaluate both models on the same data, without random augmentation")


def compare(a: EvaluationResult, b: EvaluationResult, *, confidence: float = 0.95,
            positive_class: int = 1) -> ComparisonResult:
    """Paired statistics of `b` (the candidate, e.g. the quantized model) against `a` (the reference)
    on the same samples: top-1 delta with Newcombe's paired interval, McNemar's exact test,
    prediction agreement; binary tasks add sensitivity, specificity, AUROC (DeLong) and F1, with
    `positive_class` the positive class index."""
    for name, result in (("a", a), ("b", b)):
        if not isinstance(result, EvaluationResult):
            raise ConfigError(f"compare: {name} is {type(result).__name__}; expected an EvaluationResult "
                              f"(from quantlens.evaluate)")
    if a.predictions.probs.shape[1] != b.predictions.probs.shape[1]:
        raise DataError(f"compare: the models have {a.predictions.probs.shape[1]} and "
                        f"{b.predictions.probs.shape[1]} classes; a paired comparison needs the same classes")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if a.predictions.probs.shape[1] == 2 and positive_class not in (0, 1):
        raise ConfigError(f"positive_class must be 0 or 1 in a binary task, got {positive_class}")
    reference, candidate, reordered = _aligned(a.predictions, b.predictions)
    return ComparisonResult(compare_paired(reference, candidate, confidence=confidence,
                                           positive_class=positive_class), reordered)
