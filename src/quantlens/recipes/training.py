"""The training recipe: optimiser, schedule, early stopping, cross-validation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from quantlens.recipes.base import Block

_DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3}
_DEFAULT_WD = {"sgd": 5e-4, "adamw": 0.05}


class TrainConfig(Block):
    enabled: bool = False
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(None, gt=0, description="default 0.05 for sgd, 2e-3 for adamw")
    weight_decay: float = Field(None, ge=0, description="default 5e-4 for sgd, 0.05 for adamw")
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    monitor: Literal["val_loss", "val_top1", "val_auroc"] = "val_loss"
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping early")
    folds: int = Field(1, ge=1, description=">= 2 runs k-fold cross-validation")

    @model_validator(mode="before")
    @classmethod
    def _optimizer_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict):
            optimizer = values.get("optimizer", "adamw")
            if isinstance(optimizer, str) and optimizer in _DEFAULT_LR:
                values = {"lr": _DEFAULT_LR[optimizer], "weight_decay": _DEFAULT_WD[optimizer], **values}
        return values
