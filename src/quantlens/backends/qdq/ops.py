"""The three torch custom ops a QDQ export traces, their ONNX translations, and ONNX Runtime's rounding.

    quantlens::qdq(x, scale, zero_point, axis)   -> QuantizeLinear -> DequantizeLinear
    quantlens::dq(codes, scale, zero_point, axis) -> DequantizeLinear            (int8 weights)
    quantlens::dq_bias(codes, scale)              -> DequantizeLinear, axis 0    (int32 biases)

Why custom ops: the dynamo exporter does not convert `torch.fake_quantize_per_tensor_affine`, and
the legacy exporter refuses (-127, 127) ranges; an opaque op with an explicit translation puts
quantlens's own scale and zero point (buffers, hence named initializers) into the file and nothing
else. The eager implementations compute what ONNX Runtime computes, so they double as the
deployment-faithful kernels of `faithful.py`:

    QuantizeLinear:   q = clamp(rint(x / scale) + zero_point)   true float32 division, ties to even
    DequantizeLinear: (q - zero_point) * scale                  float32

`quantize_divide` is the local stand-in for a `divide` option of quantlens's own kernels (quantlens
multiplies by the float32 reciprocal, as torch's fake-quant does; the two differ on near-ties).
"""

from __future__ import annotations

import torch

_LIMITS = {torch.uint8: (0.0, 255.0), torch.int8: (-128.0, 127.0), torch.int32: (-(2.0**31), 2.0**31 - 1)}


def _broadcast(t: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """A 0-d or (C,) scale/zero point shaped to broadcast against an ndim tensor along `axis`."""
    if t.dim() == 0:
        return t
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return t.reshape(shape)


def quantize_divide(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """ONNX Runtime's QuantizeLinear: float32 codes clamp(rint(x / scale) + zp) in the zero point's
    dtype range (uint8 0..255, int8 -128..127). scale/zero_point: 0-d, or (C,) along `axis`."""
    lo, hi = _LIMITS[zero_point.dtype]
    s = _broadcast(scale.to(torch.float32), x.dim(), axis)
    zp = _broadcast(zero_point.to(torch.float32), x.dim(), axis)
    return torch.clamp(torch.round(x.to(torch.float32) / s) + zp, lo, hi)


def dequantize_codes(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                     axis: int = 0) -> torch.Tensor:
    """ONNX's DequantizeLinear: (q - zp) * scale in float32 (scale/zero point 0-d or (C,) on `axis`)."""
    s = _broadcast(scale.to(torch.float32), q.dim(), axis)
    if zero_point is None:
        return q.to(torch.float32) * s
    return (q.to(torch.float32) - _broadcast(zero_point.to(torch.float32), q.dim(), axis)) * s


@torch.library.custom_op("quantlens::qdq", mutates_args=())
def qdq(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:
    """QuantizeLinear then DequantizeLinear, as ONNX Runtime computes them (float32, x's shape)."""
    return dequantize_codes(quantize_divide(x, scale, zero_point, axis), scale, zero_point, axis)


@qdq.register_fake
def _qdq_fake(x, scale, zero_point, axis):
    return torch.empty_like(x, dtype=torch.float32)


@torch.library.custom_op("quantlens::dq", mutates_args=())
def dq(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:
    """DequantizeLinear of stored integer codes (weights), float32 of the codes' shape."""
    return dequantize_codes(codes, scale, zero_point, axis)


@dq.register_fake
def _dq_fake(codes, scale, zero_point, axis):
    return torch.empty(codes.shape, dtype=torch.float32, device=codes.device)


@torch.library.custom_op("quantlens::dq_bias", mutates_args=())
def dq_bias(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """DequantizeLinear of an int32 bias (O,) with scale (O,) = x_scale * w_scale, zero point 0."""
    return dequantize_codes(codes, scale, None, 0)


@dq_bias.register_fake
def _dq_bias_fake(codes, scale):
    return torch.empty(codes.shape, dtype=torch.float32, device=codes.device)


def translation_table() -> dict:
    """custom_translation_table for torch.onnx.export (onnxscript functions, opset 20)."""
    from onnxscript import opset20 as op

    def qdq_onnx(x, scale, zero_point, axis: int):
        return op.DequantizeLinear(op.QuantizeLinear(x, scale, zero_point, axis=axis), scale, zero_point, axis=axis)

    def dq_onnx(codes, scale, zero_point, axis: int):
        return op.DequantizeLinear(codes, scale, zero_point, axis=axis)

    def dq_bias_onnx(codes, scale):
        return op.DequantizeLinear(codes, scale, axis=0)

    return {torch.ops.quantlens.qdq.default: qdq_onnx, torch.ops.quantlens.dq.default: dq_onnx,
            torch.ops.quantlens.dq_bias.default: dq_bias_onnx}
