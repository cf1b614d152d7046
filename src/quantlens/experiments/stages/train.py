"""The training stage: k-fold cross-validation when asked, then one model trained with its best
checkpoint kept; `training.json` (and `history.json`, `cross_validation.json` beside it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from quantlens.experiments.stages.base import STAGES, RunContext, Stage
from quantlens.experiments.training import CHECKPOINT, cross_validate, train_with_checkpoint


@dataclass(frozen=True)
class CrossValidationResult:
    """Per fold: sizes, training summary and validation metrics; their mean and std by metric."""

    FILE: ClassVar[str] = "cross_validation.json"

    folds: int
    per_fold: tuple[dict, ...]
    val_mean_std: dict  # metric -> {"mean", "std", "n_folds"}

    def to_dict(self) -> dict:
        return {"folds": self.folds, "per_fold": list(self.per_fold), "val_mean_std": self.val_mean_std}

    @classmethod
    def from_dict(cls, data: dict) -> CrossValidationResult:
        return cls(data["folds"], tuple(data["per_fold"]), data["val_mean_std"])


@dataclass(frozen=True)
class EpochRow:
    """One epoch: learning rate at its end, training loss (nats) and top-1 (fraction), and the
    validation figures when there is a validation split."""

    epoch: int
    lr: float
    train_loss: float
    train_top1: float
    val_loss: float | None = None
    val_top1: float | None = None
    val_auroc: float | None = None


@dataclass(frozen=True)
class TrainingHistory:
    """`history.json`: every epoch of the training run, in order."""

    FILE: ClassVar[str] = "history.json"

    epochs: tuple[EpochRow, ...]

    def to_list(self) -> list[dict]:
        return [asdict(row) for row in self.epochs]

    @classmethod
    def from_list(cls, rows: list[dict]) -> TrainingHistory:
        return cls(tuple(EpochRow(**row) for row in rows))


@dataclass(frozen=True)
class TrainingResult:
    """The trained model's best epoch by the monitored metric, the run's length, and its checkpoint
    (relative to the run folder); cross-validation when folds >= 2."""

    FILE: ClassVar[str] = "training.json"

    best_epoch: int
    monitor: str
    best_value: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    checkpoint: str
    cross_validation: CrossValidationResult | None = None

    def to_dict(self) -> dict:
        cv = None if self.cross_validation is None else self.cross_validation.to_dict()
        return {"best_epoch": self.best_epoch, "monitor": self.monitor, "best_value": self.best_value,
                "epochs_run": self.epochs_run, "stopped_early": self.stopped_early, "seconds": self.seconds,
                "checkpoint": self.checkpoint, "cross_validation": cv}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingResult:
        cv = data.get("cross_validation")
        return cls(data["best_epoch"], data["monitor"], data["best_value"], data["epochs_run"],
                   data["stopped_early"], data["seconds"], data["checkpoint"],
                   None if cv is None else CrossValidationResult.from_dict(cv))


def train(ctx: RunContext) -> TrainingResult:
    spec = ctx.spec
    cv = None
    if spec.train.folds >= 2:
        cv = CrossValidationResult.from_dict(cross_validate(spec, ctx.source, ctx.data, ctx.split, ctx.root,
                                                            ctx.record))
    summary = train_with_checkpoint(spec, ctx.data, ctx.setup, ctx.split, ctx.record)
    return TrainingResult(summary["best_epoch"], summary["monitor"], summary["best_value"], summary["epochs_run"],
                          summary["stopped_early"], summary["seconds"], CHECKPOINT, cv)


STAGES.add("train", Stage(
    "train",
    order=10,
    result_type=TrainingResult,
    file=TrainingResult.FILE,
    enabled=lambda spec: spec.train.enabled,
    run=train,
))
