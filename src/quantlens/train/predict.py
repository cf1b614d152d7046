"""Batched inference over a prepared dataset -> per-sample `Predictions`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.data.loader import PreparedData
from quantlens.devices import module_device
from quantlens.errors import ModelError
from quantlens.metrics.classification import Predictions
from quantlens.train.outputs import declared_output_kind, to_probabilities


@torch.inference_mode()
def predict(model: nn.Module, data: PreparedData, indices: np.ndarray, batch_size: int = 256,
            description: str | None = "evaluating", output_kind: str | None = None) -> Predictions:
    """Probabilities of `model` on `indices`, computed on the model's device; refuses non-finite
    outputs instead of scoring them. `description` names the progress task (None: no task).
    `output_kind`: what the model returns (`quantlens.train.outputs`); by default what the model says
    (`quantlens_output_kind`), else logits. Models set up by quantlens return logits or log-probabilities."""
    was_training = model.training
    model.eval()
    try:
        return predict_with(model, data, indices, batch_size, description, module_device(model),
                            output_kind or declared_output_kind(model))
    finally:
        model.train(was_training)


@torch.inference_mode()
def predict_with(forward: Callable[[torch.Tensor], torch.Tensor], data: PreparedData, indices: np.ndarray,
                 batch_size: int = 256, description: str | None = "evaluating",
                 device: torch.device | str = "cpu", output_kind: str = "logits") -> Predictions:
    """`predict` for any forward function (a deployed runtime's session, say): batches are sent to
    `device`, outputs of `output_kind` (logits, probabilities, log_probabilities) come back as a tensor
    or an array and become probabilities without a second softmax (`to_probabilities`)."""
    probs, labels, seen = [], [], []
    progress = events.Task(description, total=len(indices), unit="images") if description else None
    try:
        for x, y, idx in data.batches(indices, batch_size, device=device):
            logits = torch.as_tensor(forward(x))
            if logits.ndim != 2 or logits.shape[1] != data.source.num_classes:
                raise ModelError(f"model output has shape {tuple(logits.shape)}; expected (batch, "
                                 f"{data.source.num_classes}) for {data.source.num_classes} classes")
            probs.append(to_probabilities(logits, output_kind).cpu())
            labels.append(y.cpu())
            seen.append(idx)
            if progress:
                progress.advance(len(idx))
    finally:
        if progress:
            progress.finish()
    p = torch.cat(probs).numpy() if probs else np.zeros((0, data.source.num_classes), np.float32)
    bad = int((~np.isfinite(p)).any(axis=1).sum())
    if bad:
        raise ModelError(f"the model produced non-finite outputs (NaN/Inf) for {bad} of {len(p)} samples")
    order = torch.cat(seen).numpy() if seen else np.zeros(0, np.int64)
    ids = np.asarray([data.source.ids[i] for i in order], dtype=str)
    return Predictions(order, torch.cat(labels).numpy() if labels else np.zeros(0, np.int64), p, ids)
