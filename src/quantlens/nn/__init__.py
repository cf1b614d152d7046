"""Module forms of functional operations, and fake-quant wrappers keyed by float module type.

    from quantlens.nn import quantize_model, calibrate, dequantize_model
"""

from quantlens.nn.convert import (
                                  calibrate,
                                  clear_recordings,
                                  dequantize_model,
                                  quant_wrappers,
                                  quantize_model,
                                  recording,
)
from quantlens.nn.registry import QUANT_LAYERS, LayerKind, kind_of, register_layer
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.nn.wrapper import QuantWrapper

__all__ = ["QUANT_LAYERS", "LayerKind", "LayerPlan", "QuantWrapper", "TensorSpec", "calibrate", "clear_recordings",
           "dequantize_model", "kind_of", "quant_wrappers", "quantize_model", "recording", "register_layer"]
