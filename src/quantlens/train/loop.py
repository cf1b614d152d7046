"""Seeded FP32 training with validation, early stopping and a best checkpoint."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quantlens import events
from quantlens.data.loader import PreparedData
from quantlens.data.transforms import Augmentation
from quantlens.devices import module_device
from quantlens.metrics.classification import classification_metrics
from quantlens.models.checkpoints import save_weights
from quantlens.recipes import TrainConfig
from quantlens.train.predict import predict
from quantlens.train.schedule import lr_multiplier

_HIGHER_IS_BETTER = {"val_loss": False, "val_top1": True, "val_auroc": True}


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    monitor: str
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"best_epoch": self.best_epoch, "monitor": self.monitor, "best_value": self.best_value,
                "epochs_run": len(self.history), "stopped_early": self.stopped_early, "seconds": round(self.seconds, 2)}


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation parameters (1-D tensors): decaying them only hurts.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _validate(model: nn.Module, data: PreparedData, indices: np.ndarray, batch_size: int) -> dict:
    pred = predict(model, data, indices, batch_size, description=None)  # each epoch: no bar of its own
    metrics = classification_metrics(pred, data.source.class_names)
    return {"val_loss": metrics["nll"], "val_top1": metrics["top1"], "val_auroc": metrics["auroc"]}


def train_model(model: nn.Module, data: PreparedData, train_idx: np.ndarray, val_idx: np.ndarray,
                cfg: TrainConfig, *, seed: int, augmentation: Augmentation | None = None,
                checkpoint: Path | None = None, label: str = "train") -> TrainResult:
    """Train `model` in place, on its device; on return it holds the weights of the best validation epoch.
    Progress and each epoch's figures are reported as events."""
    device = module_device(model)
    generator = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, total_steps=cfg.epochs * steps_per_epoch, warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        kind=cfg.schedule))
    monitor = cfg.monitor if len(val_idx) else "train_loss"
    higher = _HIGHER_IS_BETTER.get(monitor, False)
    best = TrainResult(best_epoch=0, best_value=-math.inf if higher else math.inf, monitor=monitor)
    best_state = None
    epochs_since_best = 0
    start = time.perf_counter()
    with events.task(label, total=cfg.epochs * steps_per_epoch, unit="steps") as progress:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for x, y, _ in data.batches(train_idx, cfg.batch_size, shuffle=True, generator=generator,
                                        augmentation=augmentation, device=device):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                progress.advance(1, status=f"epoch {epoch} loss {loss_sum / seen:.4f}")
            row = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / seen,
                   "train_top1": correct / seen}
            if len(val_idx):
                row.update(_validate(model, data, val_idx, max(256, cfg.batch_size)))
            value = row.get(monitor)
            if value is None:  # e.g. AUROC of a validation split holding one class
                value, higher_now = row["val_loss"], False
            else:
                higher_now = higher
            improved = value > best.best_value if higher_now else value < best.best_value
            if improved:
                best.best_epoch, best.best_value, epochs_since_best = epoch, value, 0
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint is not None:
                    save_weights(model, checkpoint)
            else:
                epochs_since_best += 1
            best.history.append(row)
            shown = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr") and v is not None)
            events.note(f"{label} epoch {epoch:>3}/{cfg.epochs}  {shown}{'  *' if improved else ''}")
            if epochs_since_best >= cfg.patience:
                best.stopped_early = True
                events.note(f"{label}: no improvement of {monitor} for {cfg.patience} epochs; stopping early")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    best.seconds = time.perf_counter() - start
    return best
