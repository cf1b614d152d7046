"""Fake quantization with a straight-through gradient (the layer a module wrapper calls).

Forward: exactly `fake_quantize`. Backward: the incoming gradient passes unchanged (STE), or,
with `clip_gradient=True`, is zeroed where x lies outside the representable range
[lowest, max] * scale (the clipped STE of PACT/LSQ-style training). Scales get no gradient.
"""

from __future__ import annotations

import torch

from quantlens.formats.kernels import KernelPath
from quantlens.formats.minifloat import inverse_scale
from quantlens.formats.registry import get_format
from quantlens.formats.rounding import Rounding, as_float32
from quantlens.formats.types import BlockFormat, IntFormat, NumberFormat
from quantlens.scaling.fake_quant import fake_quantize, scales4
from quantlens.scaling.granularity import Granularity, GroupLayout
from quantlens.scaling.qparams import QuantParams, ScaleKind, compute_qparams


def _grid_range(fmt: NumberFormat, zero_point4: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """[lo, hi] in units of x * inverse_scale."""
    if isinstance(fmt, IntFormat):
        return fmt.qmin - zero_point4, fmt.qmax - zero_point4
    if isinstance(fmt, BlockFormat):  # block elements are signed and symmetric
        return -fmt.max, fmt.max
    return fmt.lowest, fmt.max


def inside_range(x: torch.Tensor, fmt: str | NumberFormat, params: QuantParams) -> torch.Tensor:
    """Boolean mask (x's shape): x * (1/scale) within the format's [lowest, max] (for integers
    [qmin - zp, qmax - zp]). NaN is outside."""
    fmt = get_format(fmt)
    x = as_float32(x)
    layout = GroupLayout.of(x.shape, params.granularity)
    scale4, tensor_scale, zero_point = scales4(params, layout)
    v4 = layout.arrange(x) * inverse_scale(scale4 * tensor_scale)
    lo, hi = _grid_range(fmt, zero_point.to(torch.float32))
    return layout.restore((v4 >= lo) & (v4 <= hi))


class FakeQuantizeSTE(torch.autograd.Function):
    """y = fake_quantize(x, fmt, params, ...); dy/dx = 1 (or the inside-range mask)."""

    @staticmethod
    def forward(ctx, x, fmt, params, rounding, saturate, generator, clip_gradient, path):
        ctx.clip_gradient = clip_gradient
        ctx.input_dtype = x.dtype
        if clip_gradient:
            ctx.save_for_backward(inside_range(x, fmt, params))
        return fake_quantize(x, fmt, params, rounding=rounding, saturate=saturate, generator=generator, path=path)

    @staticmethod
    def backward(ctx, grad_output):
        grad = grad_output
        if ctx.clip_gradient:
            (mask,) = ctx.saved_tensors
            grad = grad * mask
        return grad.to(ctx.input_dtype), None, None, None, None, None, None, None


def fake_quantize_ste(x: torch.Tensor, fmt: str | NumberFormat, params: QuantParams, *,
                      clip_gradient: bool = False, rounding: Rounding = "nearest_even", saturate: bool = True,
                      generator: torch.Generator | None = None, path: KernelPath = "auto") -> torch.Tensor:
    """`fake_quantize` with a straight-through gradient for x (float32 output)."""
    return FakeQuantizeSTE.apply(x, get_format(fmt), params, rounding, saturate, generator, clip_gradient, path)


def quantize_dequantize_ste(x: torch.Tensor, fmt: str | NumberFormat, granularity: Granularity | None = None, *,
                            amax=None, min_val=None, max_val=None, scale_kind: ScaleKind = "fp32",
                            clip_gradient: bool = False, rounding: Rounding = "nearest_even",
                            saturate: bool = True, generator: torch.Generator | None = None,
                            path: KernelPath = "auto") -> torch.Tensor:
    """Scales from x (or the given statistics), then `fake_quantize_ste`: the differentiable
    call for activations in quantization-aware training."""
    params = compute_qparams(x.detach(), fmt, granularity, amax=amax, min_val=min_val, max_val=max_val,
                             scale_kind=scale_kind, path=path)
    return fake_quantize_ste(x, fmt, params, clip_gradient=clip_gradient, rounding=rounding,
                             saturate=saturate, generator=generator, path=path)
