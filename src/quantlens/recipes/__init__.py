"""One frozen, validated config object per workflow (training now; PTQ, QAT, mixed precision later)."""

from quantlens.recipes.base import Block
from quantlens.recipes.training import TrainConfig

__all__ = ["Block", "TrainConfig"]
