"""One frozen, validated config object per workflow (training, simulated quantization; PTQ, QAT later)."""

from quantlens.recipes.base import Block
from quantlens.recipes.planning import ModelPlan, plan_layers
from quantlens.recipes.quantization import Override, QuantizationConfig
from quantlens.recipes.training import TrainConfig

__all__ = ["Block", "ModelPlan", "Override", "QuantizationConfig", "TrainConfig", "plan_layers"]
