"""The torch custom op an ONNX Runtime dynamic INT8 export traces, its ONNX translation, and its eager
form: exactly what ONNX Runtime's DynamicQuantizeMatMul computes on x86 (checked bit for bit in tests).

    quantlens::ort_dynamic_linear(x, w_t, w_zero_point, w_scale, bias)
      -> DynamicQuantizeLinear(x) -> MatMulInteger(x_q, w_t, x_zp, w_zp) -> Cast(float)
         -> Mul(., Mul(x_scale, w_scale)) -> Add(., bias)

ONNX Runtime 1.32 (CPU, default optimisation level) fuses that chain into one DynamicQuantizeMatMul node
(per-column w_scale and the bias included): the input's uint8 codes and scale are computed once, the
int32 sums by MLAS's u8 x s8 (or u8 x u8) GEMM, and each output is

    y = float32(acc) * float32(x_scale * w_scale[n]) + bias[n]      (two float32 roundings, no FMA)

with  lo = min(x, 0), hi = max(x, 0) over the whole tensor, x_scale = (hi - lo) / 255 (1 when hi == lo),
x_zp = rint(clamp(-lo / x_scale, 0, 255)), x_q = clamp(rint(x / x_scale) + x_zp, 0, 255).

w_t is (K, O): int8 codes (zero point 0), or uint8 codes + 128 with zero point 128 (the same values; on
CPUs without VNNI ONNX Runtime's u8 x u8 kernel is exact, while u8 x s8 adds pairs of products in
saturating int16 lanes unless the session sets `session.x64quantprecision`).
"""

from __future__ import annotations

import torch

U8_MAX = 255.0


def dynamic_quantize_uint8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX's DynamicQuantizeLinear: (codes float32 in [0, 255], scale 0-d float32, zero point 0-d float32)."""
    x = x.to(torch.float32)
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / U8_MAX)
    zero_point = torch.round(torch.clamp(-lo / scale, 0.0, U8_MAX))
    codes = torch.clamp(torch.round(x / scale) + zero_point, 0.0, U8_MAX)
    return codes, scale, zero_point


def exact_int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., K) @ (K, N) of integer-valued float tensors, exact (float64: |sums| < 2^53), as float64."""
    return torch.matmul(a.to(torch.float64), b.to(torch.float64))


@torch.library.custom_op("quantlens::ort_dynamic_linear", mutates_args=())
def ort_dynamic_linear(x: torch.Tensor, w_t: torch.Tensor, w_zero_point: torch.Tensor, w_scale: torch.Tensor,
                       bias: torch.Tensor) -> torch.Tensor:
    """DynamicQuantizeMatMul as ONNX Runtime computes it: x (..., K) float32 -> (..., O) float32."""
    codes, x_scale, x_zp = dynamic_quantize_uint8(x)
    weights = w_t.to(torch.float32) - w_zero_point.to(torch.float32)  # (K, O) integer values
    acc = exact_int_matmul(codes - x_zp, weights)  # (..., O) exact int32 sums
    multiplier = (x_scale * w_scale.to(torch.float32)).to(torch.float32)  # (O,): float32(x_s * w_s[n])
    return acc.to(torch.float32) * multiplier + bias.to(torch.float32)


@ort_dynamic_linear.register_fake
def _ort_dynamic_linear_fake(x, w_t, w_zero_point, w_scale, bias):
    return x.new_empty((*x.shape[:-1], w_t.shape[1]), dtype=torch.float32)


def translation_table() -> dict:
    """custom_translation_table for torch.onnx.export (onnxscript, opset 20)."""
    from onnx import TensorProto
    from onnxscript import opset20 as op

    def ort_dynamic_linear_onnx(x, w_t, w_zero_point, w_scale, bias):
        x_q, x_scale, x_zp = op.DynamicQuantizeLinear(x)
        acc = op.MatMulInteger(x_q, w_t, x_zp, w_zero_point)
        scaled = op.Mul(op.Cast(acc, to=TensorProto.FLOAT), op.Mul(x_scale, w_scale))
        return op.Add(scaled, bias)

    return {torch.ops.quantlens.ort_dynamic_linear.default: ort_dynamic_linear_onnx}
