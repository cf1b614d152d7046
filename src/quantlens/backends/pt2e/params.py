"""quantlens's calibrated scales as pt2e observers.

pt2e's `convert_pt2e` asks every observer for `calculate_qparams()` and writes quantize/dequantize nodes from the
answer. A fixed observer here observes nothing and answers with quantlens's scale and zero point, so the deployed
graph quantizes with exactly what the simulation calibrated (never re-calibrated):

  activation (int8_asym codes, zero point z)  -> u8 codes, zero point z + 128, same scale (uint8 formats: z)
  weight (signed symmetric, <= 8 bits)         -> s8 codes, zero point 0, one scale per output channel
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantlens.backends.pt2e.api import TorchaoApi
from quantlens.backends.pt2e.validate import activation_offset
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import PerChannel


@dataclass(frozen=True)
class FixedParams:
    """One tensor's quantization as pt2e expresses it (u8/s8 codes, float32 scale)."""

    scale: torch.Tensor  # 0-d (per tensor) or (C,)
    zero_point: torch.Tensor  # int64, like scale
    dtype: torch.dtype  # torch.uint8 (activations) or torch.int8 (weights)
    quant_min: int
    quant_max: int
    axis: int | None  # None: per tensor
    where: str  # the quantlens quantizer ('c2 input 0', 'fc weight')

    def key(self) -> tuple:
        """Equal for two tensors quantized identically (one quantize node can serve both)."""
        return (self.dtype, self.axis, self.quant_min, self.quant_max, tuple(self.scale.reshape(-1).tolist()),
                tuple(self.zero_point.reshape(-1).tolist()))

    def scalar(self) -> tuple[float | tuple[float, ...], int | tuple[int, ...]]:
        """(scale, zero point) as Python numbers (per tensor) or tuples (per channel)."""
        if self.axis is None:
            return float(self.scale), int(self.zero_point)
        return tuple(self.scale.tolist()), tuple(int(z) for z in self.zero_point.tolist())


def activation_params(q, where: str) -> FixedParams:
    fmt = q.spec.format
    offset = activation_offset(fmt, where)
    params = q.params
    if isinstance(params.granularity, PerChannel):
        axis = int(params.granularity.axis)
        scale, zp = params.scale.reshape(-1), params.zero_point.reshape(-1)
    else:
        axis = None
        scale, zp = params.scale.reshape(()), params.zero_point.reshape(())
    return FixedParams(scale.detach().float().clone(), zp.to(torch.int64) + offset, torch.uint8, fmt.qmin + offset,
                       fmt.qmax + offset, axis, where)


def weight_params(pq, weight: torch.Tensor, where: str) -> FixedParams:
    """s8 per output channel (a per-tensor scale is repeated over the channels: the same codes)."""
    params = pq.params_for(weight)
    out = weight.shape[0]
    scale = params.scale.reshape(-1).float().expand(out).contiguous() if params.scale.numel() == 1 \
        else params.scale.reshape(-1).float().clone()
    return FixedParams(scale, torch.zeros(out, dtype=torch.int64), torch.int8, -128, 127, 0, where)


def layer_params(wrappers: dict[str, QuantWrapper]) -> dict[str, FixedParams]:
    """'<layer> input <i>' and '<layer> weight' -> the params the deployed graph must quantize with."""
    params: dict[str, FixedParams] = {}
    for name, wrapper in wrappers.items():
        for i, q in enumerate(wrapper.input_quantizers):
            params[f"{name} input {i}"] = activation_params(q, f"{name} input {i}")
        if "weight" in wrapper.param_quantizers:
            params[f"{name} weight"] = weight_params(wrapper.param_quantizers["weight"], wrapper.module.weight,
                                                     f"{name} weight")
    return params


def fixed_observer(api: TorchaoApi, params: FixedParams) -> nn.Module:
    """A pt2e observer that observes nothing and hands `convert_pt2e` quantlens's params."""

    class QuantlensFixedObserver(api.ObserverBase):
        def __init__(self) -> None:
            super().__init__(dtype=params.dtype, is_dynamic=False)
            per_channel = params.axis is not None
            symmetric = params.dtype == torch.int8
            self.qscheme = ((torch.per_channel_symmetric if symmetric else torch.per_channel_affine) if per_channel
                            else (torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine))
            self.ch_axis = params.axis if per_channel else -1
            self.quant_min, self.quant_max = params.quant_min, params.quant_max
            self.register_buffer("scale", params.scale.clone())
            self.register_buffer("zero_point", params.zero_point.clone())
            self.quantlens_where = params.where

        def forward(self, x):
            return x

        def calculate_qparams(self, **kwargs):
            return self.scale, self.zero_point

        def extra_repr(self) -> str:
            return f"{self.quantlens_where}, fixed by quantlens"

    return QuantlensFixedObserver()
