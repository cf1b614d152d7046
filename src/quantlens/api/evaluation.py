"""`evaluate`: a classifier's metrics and per-sample predictions on PyTorch data, as a typed result.

Each sample is identified by a fingerprint of its input (a hash of the tensor's bytes), so two
results can be paired sample by sample later (`quantlens.compare`) even when a DataLoader gave
them in different orders, and results on different inputs (another split, random augmentation)
are refused rather than compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from quantlens import events
from quantlens.api.data import DataLike, batches
from quantlens.devices import module_device
from quantlens.errors import ConfigError, DataError, ModelError
from quantlens.metrics.classification import ClassificationMetrics, Predictions, classification_metrics
from quantlens.train.outputs import OUTPUT_KINDS, declared_output_kind, to_probabilities

FINGERPRINT_BYTES = 8  # 64-bit hashes: a collision among a million distinct samples has odds ~3e-8


@dataclass(frozen=True)
class EvaluationResult:
    """One model on one set of samples.

    predictions: per sample, in the order the data gave them: indices (N,) 0..N-1, labels (N,),
        probs (N, K) float32 and ids (N,) str, the fingerprints of the inputs.
    metrics: top1, top5 (None for K <= 5), macro precision/recall/F1, auroc, mean_confidence, ece,
        nll, per_class, confusion_matrix (and sensitivity/specificity for K = 2); fractions in [0, 1].
    """

    predictions: Predictions
    metrics: ClassificationMetrics
    class_names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.predictions.labels)

    def to_dict(self) -> dict:
        return {"n": self.n, "class_names": list(self.class_names), "metrics": self.metrics.to_dict()}


def fingerprints(x: torch.Tensor) -> list[str]:
    """(B, ...) inputs -> B hex digests of each sample's float32 bytes."""
    rows = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=FINGERPRINT_BYTES).hexdigest() for row in rows]


def _class_names(class_names: Sequence[str] | None, k: int, top_label: int) -> tuple[str, ...]:
    names = tuple(str(c) for c in range(k)) if class_names is None else tuple(str(c) for c in class_names)
    if len(names) != k:
        raise ConfigError(f"class_names lists {len(names)} classes; the model outputs {k}")
    if top_label >= k:
        raise DataError(f"the data holds the label {top_label}, which is not a class of a model with {k} outputs")
    return names


def _total(data: Any) -> int | None:
    """Samples in `data` when it says (a tensor, a sized Dataset, a DataLoader's sampler), else None."""
    try:
        if isinstance(data, DataLoader):
            return len(data.sampler)  # type: ignore[arg-type]
        return len(data) if isinstance(data, (torch.Tensor, Dataset)) else None
    except TypeError:  # an IterableDataset without a length
        return None


def _logits(outputs: Any) -> torch.Tensor:
    """A model's (B, classes) outputs: a tensor, or the `.logits` of an output object (Hugging Face)."""
    outputs = getattr(outputs, "logits", outputs)
    if not isinstance(outputs, torch.Tensor):
        raise ModelError(f"the model returns {type(outputs).__name__}; evaluate needs a tensor of (batch, classes) "
                         f"outputs (or an object with .logits)")
    return outputs


@torch.inference_mode()
def evaluate(model: nn.Module, data: DataLike, *, batch_size: int = 256, class_names: Sequence[str] | None = None,
             output_kind: str | None = None) -> EvaluationResult:
    """Metrics and per-sample predictions of `model` on `data`, computed on the model's device.

    data: a Dataset, DataLoader or iterable of batches yielding `(x, y, ...)` or dicts with an image
    and a label key (see `quantlens.api.data`). batch_size: how a Dataset is batched.
    class_names: one per model output (default "0", "1", ...). output_kind: what the model returns
    ("logits", "probabilities", "log_probabilities"; default: what the model declares, else logits).
    The model is run in eval mode and left in the mode it was in.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model is {type(model).__name__}; expected a torch.nn.Module")
    kind = output_kind or declared_output_kind(model)
    if kind not in OUTPUT_KINDS:
        raise ConfigError(f"output_kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    device = module_device(model)
    probs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    ids: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with events.task("evaluating", total=_total(data), unit="images") as progress:
            for batch in batches(data, batch_size=batch_size, what="data"):
                if batch.y is None:
                    raise DataError("data yields inputs without labels; evaluate needs (x, y) batches or dicts "
                                    "with a label key ('label', 'labels', 'target' or 'y')")
                outputs = _logits(model(batch.x.to(device)))
                if outputs.ndim != 2 or len(outputs) != len(batch) or (probs and outputs.shape[1] != probs[0].shape[1]):
                    expected = f"({len(batch)}, classes)" if not probs else f"({len(batch)}, {probs[0].shape[1]})"
                    raise ModelError(f"model output has shape {tuple(outputs.shape)}; expected {expected}")
                probs.append(to_probabilities(outputs, kind).float().cpu())
                labels.append(batch.y.cpu())
                ids += fingerprints(batch.x)
                progress.advance(len(batch))
    finally:
        model.train(was_training)
    if not probs:
        raise DataError("data yields no samples")
    p = torch.cat(probs).numpy()
    y = torch.cat(labels).numpy()
    bad = int((~np.isfinite(p)).any(axis=1).sum())
    if bad:
        raise ModelError(f"the model produced non-finite outputs (NaN/Inf) for {bad} of {len(p)} samples")
    names = _class_names(class_names, p.shape[1], int(y.max()))
    predictions = Predictions(np.arange(len(y)), y, p, np.asarray(ids, dtype=str))
    metrics = ClassificationMetrics.from_dict(classification_metrics(predictions, list(names)))
    return EvaluationResult(predictions, metrics, names)
