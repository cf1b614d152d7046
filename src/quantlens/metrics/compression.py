"""Storage cost of a (simulated) quantized model: bits per weight including scales, model bytes.

A quantized tensor costs its elements at the format's width, plus one scale per group (32 bits
for FP32 scales, 8 for power-of-two scales stored as E8M0 exponents, the block format's own scale
width for MX/NVFP4, plus NVFP4's FP32 tensor scale), plus an integer zero point per group for
asymmetric integer formats. Everything left in float counts at its dtype's width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from quantlens.formats import BlockFormat, IntFormat
from quantlens.nn.convert import quant_wrappers
from quantlens.nn.quantizer import ParamQuantizer
from quantlens.scaling import GroupLayout


@dataclass(frozen=True)
class TensorCost:
    name: str
    format: str
    elements: int
    bits: int  # elements + scales + zero points

    @property
    def bits_per_element(self) -> float:
        return self.bits / self.elements if self.elements else 0.0


def quantized_bits(shape: torch.Size, quantizer: ParamQuantizer) -> int:
    spec = quantizer.spec
    fmt = spec.format
    view = (shape[0], math.prod(shape[1:])) if quantizer.matrix and len(shape) > 2 else tuple(shape)
    groups = math.prod(GroupLayout.of(torch.Size(view), spec.granularity(quantizer.axis)).scale_shape)
    elements = math.prod(view)
    if isinstance(fmt, BlockFormat):
        bits = elements * fmt.element.bits + groups * fmt.scale_format.bits
        return bits + (32 if fmt.rule == "nvfp4" else 0)
    scale_bits = 32 if spec.scale_kind == "fp32" else 8
    zero_point_bits = fmt.bits if isinstance(fmt, IntFormat) and not fmt.symmetric else 0
    return elements * fmt.bits + groups * (scale_bits + zero_point_bits)


def compression_stats(model: nn.Module) -> dict:
    """Sizes of every parameter and buffer (num_batches_tracked excluded), quantized or not."""
    quantized: dict[str, TensorCost] = {}
    for name, wrapper in quant_wrappers(model):
        for pname, quantizer in wrapper.param_quantizers.items():
            tensor = getattr(wrapper.module, pname)
            full = f"{name}.module.{pname}"
            quantized[full] = TensorCost(f"{name}.{pname}", quantizer.spec.format.name, tensor.numel(),
                                         quantized_bits(tensor.shape, quantizer))
    total_bits = float_bits = 0
    weight_bits = weight_elements = 0
    for full, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if full.endswith("num_batches_tracked"):
            continue
        fp32 = tensor.numel() * 32
        float_bits += fp32
        cost = quantized.get(full)
        total_bits += cost.bits if cost else tensor.numel() * tensor.element_size() * 8
        if cost and not full.endswith(("running_mean", "running_var", "bias")) and tensor.ndim > 1:
            weight_bits += cost.bits
            weight_elements += cost.elements
    return {
        "model_bytes": total_bits / 8,
        "fp32_bytes": float_bits / 8,
        "reduction_vs_fp32": float_bits / total_bits if total_bits else 1.0,
        "bits_per_quantized_weight": weight_bits / weight_elements if weight_elements else None,
        "quantized_weight_elements": weight_elements,
        "tensors": [asdict(c) | {"bits_per_element": c.bits_per_element} for c in quantized.values()],
    }
