"""Tensor-level fake quantization: pure functions, float32 in and out, same shape.

    params = compute_qparams(w, "int8", PerChannel(0))      # weights: once, then cache the output
    w_q = fake_quantize(w, "int8", params)
    a_q = quantize_dequantize(a, "fp8_e4m3")                 # activations: scale from a, per call

`quantize` gives the grid values and `dequantize` maps them back; `fake_quantize` fuses the two
and returns the same bits, so callers can check compliance: fake_quantize(x) ==
dequantize(quantize(x)) exactly, and every quantize(x) value lies on the format's grid.
For gradients use scaling/ste.py.

`divide=True` (integer formats only) divides x by the scale with a true float32 division, as ONNX
Runtime's QuantizeLinear does, instead of multiplying by the reciprocal (see formats/integer.py);
it models that integer operator only, so other formats refuse it with a ConfigError.
"""

from __future__ import annotations

import torch

from quantlens.errors import ConfigError
from quantlens.formats.blocks import block_element_fake_quant
from quantlens.formats.integer import divide_by_scale, int_fake_quant
from quantlens.formats.kernels import KernelPath
from quantlens.formats.minifloat import inverse_scale, minifloat_fake_quant
from quantlens.formats.registry import get_format
from quantlens.formats.rounding import Rounding, as_float32, check_rounding
from quantlens.formats.types import BlockFormat, FloatFormat, IntFormat, NumberFormat
from quantlens.scaling.granularity import Granularity, GroupLayout, resolve_granularity
from quantlens.scaling.qparams import QuantParams, ScaleKind, compute_qparams_arranged


def scales4(params: QuantParams, layout: GroupLayout):
    """(scale, tensor_scale, zero_point) as views in the (P|1, G, 1, Q|1) layout; no copies."""
    if tuple(params.scale.shape) != layout.scale_shape:
        raise ConfigError(f"scale has shape {tuple(params.scale.shape)} but {params.granularity!r} on a "
                          f"{tuple(layout.shape)} tensor needs {layout.scale_shape}")
    scale4 = layout.scale_to4(params.scale.to(torch.float32))
    tensor_scale = params.tensor_scale.to(torch.float32).reshape(1, 1, 1, 1)
    return scale4, tensor_scale, layout.scale_to4(params.zero_point)


def check_divide(fmt: NumberFormat, divide: bool) -> None:
    """divide=True models ONNX Runtime's integer QuantizeLinear: integer formats only."""
    if not isinstance(divide, bool):
        raise ConfigError(f"divide must be True or False, got {divide!r}")
    if divide and not isinstance(fmt, IntFormat):
        raise ConfigError(f"divide=True models ONNX Runtime's integer QuantizeLinear (x / scale) only; "
                          f"{fmt.name} is not an integer format")


def _apply(x4, layout: GroupLayout, fmt: NumberFormat, params: QuantParams, *, grid_only: bool,
           rounding: str, saturate: bool, generator, path: str, divide: bool = False) -> torch.Tensor:
    # grid_only: return grid values (element units; integer codes minus zero point) instead of
    # dequantized values: divide by the scales first (the same multiplication, or with divide the
    # same division, the kernels do), then run the kernel with unit scales
    scale4, tensor_scale, zero_point = scales4(params, layout)
    if grid_only:
        total = scale4 * tensor_scale
        x4 = divide_by_scale(x4, total) if divide else x4 * inverse_scale(total)
        scale4 = tensor_scale = torch.ones((1, 1, 1, 1), dtype=torch.float32, device=x4.device)
    kw = dict(rounding=rounding, generator=generator, path=path)
    if isinstance(fmt, FloatFormat):
        return minifloat_fake_quant(x4, fmt, scale4, tensor_scale, saturate=saturate, **kw)
    if isinstance(fmt, BlockFormat):
        return block_element_fake_quant(x4, fmt, scale4, tensor_scale, saturate=saturate, **kw)
    return int_fake_quant(x4, fmt, scale4, zero_point, divide=divide, **kw)


def _prepare(x, fmt, params: QuantParams, rounding: str):
    fmt = get_format(fmt)
    check_rounding(rounding)
    if not isinstance(params, QuantParams):
        raise TypeError(f"params must be QuantParams (from compute_qparams), got {type(params).__name__}")
    x = as_float32(x)
    resolve_granularity(fmt, params.granularity)  # block formats need PerBlock
    layout = GroupLayout.of(x.shape, params.granularity)
    return x, fmt, layout


def fake_quantize(x: torch.Tensor, fmt: str | NumberFormat, params: QuantParams, *,
                  rounding: Rounding = "nearest_even", saturate: bool = True,
                  generator: torch.Generator | None = None, path: KernelPath = "auto",
                  divide: bool = False) -> torch.Tensor:
    """x rounded onto fmt's grid at the given scales, back in real units (float32, x's shape).

    rounding: "nearest_even" or "stochastic" (seeded through `generator`). saturate: values
    beyond the largest grid value clamp to it; False lets them become Inf/NaN where the format
    has them (integers always clamp). NaN in x stays NaN; a NaN scale makes its group NaN.
    divide: integer formats only: x / scale as a true division (ONNX Runtime's QuantizeLinear)."""
    x, fmt, layout = _prepare(x, fmt, params, rounding)
    check_divide(fmt, divide)
    y4 = _apply(layout.arrange(x), layout, fmt, params, grid_only=False, rounding=rounding,
                saturate=saturate, generator=generator, path=path, divide=divide)
    return layout.restore(y4)


def quantize(x: torch.Tensor, fmt: str | NumberFormat, params: QuantParams, *,
             rounding: Rounding = "nearest_even", saturate: bool = True,
             generator: torch.Generator | None = None, path: KernelPath = "auto",
             divide: bool = False) -> torch.Tensor:
    """The grid values behind `fake_quantize` (float32, x's shape): integer codes q in
    [qmin, qmax] for integers, grid values for minifloats, element values for block formats."""
    x, fmt, layout = _prepare(x, fmt, params, rounding)
    check_divide(fmt, divide)
    g4 = _apply(layout.arrange(x), layout, fmt, params, grid_only=True, rounding=rounding,
                saturate=saturate, generator=generator, path=path, divide=divide)
    if not isinstance(fmt, (FloatFormat, BlockFormat)):
        g4 = g4 + layout.scale_to4(params.zero_point.to(torch.float32))  # q - zp -> q (exact integers)
    return layout.restore(g4)


def dequantize(q: torch.Tensor, fmt: str | NumberFormat, params: QuantParams) -> torch.Tensor:
    """Grid values back to real units, exactly as `fake_quantize` computes them:
    (q - zero_point) * scale for integers, (q * scale) * tensor_scale otherwise."""
    q, fmt, layout = _prepare(q, fmt, params, "nearest_even")
    q4 = layout.arrange(q)
    scale4, tensor_scale, zero_point = scales4(params, layout)
    if isinstance(fmt, (FloatFormat, BlockFormat)):
        return layout.restore((q4 * scale4) * tensor_scale)
    return layout.restore((q4 - zero_point.to(torch.float32)) * scale4)


def quantize_dequantize(x: torch.Tensor, fmt: str | NumberFormat, granularity: Granularity | None = None, *,
                        amax=None, min_val=None, max_val=None, scale_kind: ScaleKind = "fp32",
                        rounding: Rounding = "nearest_even", saturate: bool = True,
                        generator: torch.Generator | None = None, path: KernelPath = "auto",
                        mx_rule: str = "floor", divide: bool = False) -> torch.Tensor:
    """`compute_qparams` then `fake_quantize`, arranging x once: the call for activations.

    granularity None: PerTensor(), or PerBlock(block_size, -1) for block formats. Statistics
    (amax or min_val/max_val) come from x unless given (see compute_qparams). mx_rule: the MX
    shared-scale rule (MX formats only); divide: see `fake_quantize`."""
    fmt = get_format(fmt)
    check_rounding(rounding)
    check_divide(fmt, divide)
    granularity = resolve_granularity(fmt, granularity)
    x = as_float32(x)
    layout = GroupLayout.of(x.shape, granularity)
    x4 = layout.arrange(x)
    params = compute_qparams_arranged(x4, layout, fmt, amax=amax, min_val=min_val, max_val=max_val,
                                      scale_kind=scale_kind, path=path, mx_rule=mx_rule)
    y4 = _apply(x4, layout, fmt, params, grid_only=False, rounding=rounding, saturate=saturate,
                generator=generator, path=path, divide=divide)
    return layout.restore(y4)
