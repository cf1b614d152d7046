"""Deployment-faithful simulation: the fake-quant model computing each quantized Linear exactly as the
target runtime does (integer sums exact, the runtime's own float rescaling order), float layers unchanged.

    faithful = faithful_model(qmodel, "onnxruntime")   # or "torchao"
    faithful(batch)                                    # float32 logits

quantlens's fake quantization multiplies dequantized inputs by dequantized weights in float; the runtimes
sum integer products exactly and rescale afterwards, so the two differ by float rounding only (a few ulp
per layer), which can move a later layer's dynamic range and, rarely, a code. The faithful model has no
such difference in the quantized layers; what remains against the runtime is the float layers between
them (ONNX Runtime's Gelu, LayerNorm and Softmax kernels are not torch's, by an ulp here and there).

  onnxruntime  see ort_ops.py (DynamicQuantizeMatMul)
  torchao      codes per row: scale = max((hi - lo) / 255, eps32), zp = clamp(-128 - rint(lo / scale)),
               q = clamp(rint(x * float32(1 / scale)) + zp, -128, 127); then, in float32 and in this order,
               y = float32(q @ W^T) * x_scale;  y -= (zp * x_scale) * rowsum(W);  y *= w_scale;  y += bias
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from quantlens.backends.dynamic_int8.layers import DynamicLinear, dynamic_linears
from quantlens.backends.dynamic_int8.ort_export import WeightDtype, ort_dynamic_model
from quantlens.backends.dynamic_int8.ort_ops import exact_int_matmul
from quantlens.backends.dynamic_int8.targets import DynamicTarget, get_target
from quantlens.nn.wrapper import QuantWrapper

INT8_MIN, INT8_MAX = -128.0, 127.0
EPS32 = torch.finfo(torch.float32).eps  # torchao's floor on a row's scale (a row of zeros gets scale eps)


def quantize_rows_int8_asym(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's per-row asymmetric int8: (codes float32 (..., K), scale (..., 1), zero point (..., 1))."""
    x = x.to(torch.float32)
    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    scale = torch.clamp((hi - lo) / (INT8_MAX - INT8_MIN), min=EPS32)
    zero_point = torch.clamp(INT8_MIN - torch.round(lo / scale), INT8_MIN, INT8_MAX)
    codes = torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, INT8_MIN, INT8_MAX)
    return codes, scale, zero_point


class TorchaoFaithfulLinear(nn.Module):
    """One Linear as torchao's Int8Tensor linear computes it (dynamic per-row int8 asymmetric inputs)."""

    def __init__(self, layer: DynamicLinear) -> None:
        super().__init__()
        self.layer_name = layer.name
        self.register_buffer("codes", layer.codes.clone())  # (O, K) int8
        self.register_buffer("scale", layer.scale.clone())  # (O,)
        self.register_buffer("row_sums", layer.codes.to(torch.int32).sum(dim=1).to(torch.float32))  # (O,)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, x_scale, x_zp = quantize_rows_int8_asym(x)
        acc = exact_int_matmul(codes, self.codes.t()).to(torch.float32)  # (..., O) exact int32 sums
        y = acc * x_scale
        y = y - (x_zp * x_scale) * self.row_sums
        y = y * self.scale
        return y + self.bias if self.bias is not None else y


def _replace(qmodel: nn.Module, make) -> nn.Module:
    target = copy.deepcopy(qmodel).eval().cpu()
    for name, module in list(target.named_modules()):
        if isinstance(module, QuantWrapper):
            parent_name, _, child = name.rpartition(".")
            setattr(target.get_submodule(parent_name) if parent_name else target, child, make(name))
    return target


def faithful_model(qmodel: nn.Module, target: str | DynamicTarget, *,
                   weight_dtype: WeightDtype = "int8") -> nn.Module:
    """A copy of `qmodel` whose quantized Linears compute what `target` computes (eval, CPU).
    weight_dtype: the ONNX file's weight container (the same values either way)."""
    target = get_target(target)
    if target.name == "onnxruntime":
        return ort_dynamic_model(qmodel, weight_dtype)
    layers = {layer.name: layer for layer in dynamic_linears(qmodel, target)}
    return _replace(qmodel, lambda name: TorchaoFaithfulLinear(layers[name]))
