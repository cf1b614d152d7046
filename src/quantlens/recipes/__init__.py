"""One frozen, validated config object per workflow (training, simulated quantization; PTQ, QAT later)."""

from quantlens.recipes.base import Block
from quantlens.recipes.migration import migrate_quantization_entry
from quantlens.recipes.paths import get_field, with_field
from quantlens.recipes.planning import ModelPlan, plan_layers
from quantlens.recipes.quantization import Override, QuantizationConfig
from quantlens.recipes.tensor import TensorRecipe
from quantlens.recipes.training import TrainConfig

__all__ = ["Block", "ModelPlan", "Override", "QuantizationConfig", "TensorRecipe", "TrainConfig", "get_field",
           "migrate_quantization_entry", "plan_layers", "with_field"]
