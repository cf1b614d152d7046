"""Metrics of a classifier from its per-sample probabilities (scikit-learn where it has them).

Everything is computed from `Predictions` (labels and class probabilities per sample), which the
run record saves, so later stages (quantized models) can compute paired statistics against the
same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score

from quantlens.atomic import write_npz


@dataclass(frozen=True)
class Predictions:
    """Per-sample outputs: indices (N,) into the dataset, labels (N,), probs (N, K) float32."""

    indices: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    ids: np.ndarray  # (N,) str: the dataset's sample ids

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    def save(self, path) -> None:
        write_npz(path, indices=self.indices, labels=self.labels, predicted=self.predicted,
                  probs=self.probs.astype(np.float32), ids=self.ids.astype(str))

    @classmethod
    def load(cls, path) -> Predictions:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["indices"], z["labels"], z["probs"], z["ids"])


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |B|/N * |accuracy(B) - confidence(B)|."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    # Bin b holds confidences in (b/bins, (b+1)/bins]; confidence 0 cannot occur for K >= 1.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def _top_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def _auroc(probs: np.ndarray, labels: np.ndarray, num_classes: int, positive: int) -> tuple[float | None, dict]:
    """Binary AUROC of the positive class, or macro one-vs-rest AUROC over the classes present."""
    present = np.unique(labels)
    if len(present) < 2:
        return None, {}
    if num_classes == 2:
        return float(roc_auc_score(labels == positive, probs[:, positive])), {}
    per_class = {int(c): float(roc_auc_score(labels == c, probs[:, c])) for c in present}
    return float(np.mean(list(per_class.values()))), per_class


def classification_metrics(pred: Predictions, class_names: list[str], *, positive_class: int = 1,
                           ece_bins: int = 15) -> dict:
    """All metrics of one evaluation, as a JSON-ready dict."""
    labels, probs = pred.labels, pred.probs.astype(np.float64)
    k = len(class_names)
    predicted = probs.argmax(axis=1)
    classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    auroc, auroc_per_class = _auroc(probs, labels, k, positive_class)
    clipped = np.clip(probs, 1e-12, 1.0)
    metrics: dict = {
        "n": int(len(labels)),
        "top1": float((predicted == labels).mean()),
        "top5": _top_k(probs, labels, 5) if k > 5 else None,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "auroc": auroc,
        "mean_confidence": float(probs.max(axis=1).mean()),
        "ece": expected_calibration_error(probs, labels, ece_bins),
        "nll": float(log_loss(labels, clipped / clipped.sum(axis=1, keepdims=True), labels=classes)),
        "per_class": {name: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                             "support": int(support[c]), "auroc": auroc_per_class.get(c)}
                      for c, name in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }
    if k == 2:
        negative = 1 - positive_class
        metrics["positive_class"] = class_names[positive_class]
        metrics["sensitivity"] = float(recall[positive_class])
        metrics["specificity"] = float(recall[negative])
    return metrics


@dataclass(frozen=True)
class ClassificationMetrics:
    """The metrics of one evaluation (fractions in [0, 1]; `nll` in nats). Binary tasks add the
    positive class's name with sensitivity and specificity; `top5` is None with 5 classes or fewer."""

    n: int
    top1: float
    top5: float | None
    macro_precision: float
    macro_recall: float
    macro_f1: float
    auroc: float | None
    mean_confidence: float
    ece: float
    nll: float
    per_class: dict
    confusion_matrix: list
    positive_class: str | None = None
    sensitivity: float | None = None
    specificity: float | None = None

    @property
    def binary(self) -> bool:
        return self.sensitivity is not None

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.binary:  # the keys of a multi-class record, as `classification_metrics` writes them
            for key in ("positive_class", "sensitivity", "specificity"):
                values.pop(key)
        return values

    @classmethod
    def from_dict(cls, data: dict) -> ClassificationMetrics:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
