"""Granularity, scales and tensor-level fake quantization (the layer under the module wrappers).

    from quantlens.scaling import PerChannel, compute_qparams, fake_quantize, quantize_dequantize
    params = compute_qparams(weight, "int8", PerChannel(0))   # scale (O, 1, 1, 1)
    w_q = fake_quantize(weight, "int8", params)                # cache: weights are quantized once
    a_q = quantize_dequantize(act, "mxfp4")                    # per call: scales from act
    a_q = quantize_dequantize_ste(act, "fp8_e4m3", clip_gradient=True)   # QAT, with gradients
"""

from quantlens.scaling.fake_quant import dequantize, fake_quantize, quantize, quantize_dequantize
from quantlens.scaling.granularity import Granularity, GroupLayout, PerBlock, PerChannel, PerTensor, resolve_granularity
from quantlens.scaling.qparams import (
    ASYMMETRIC_SCALE,
    GROUP_MIN_MAX,
    MIN_SCALE,
    SYMMETRIC_SCALE,
    QuantParams,
    ScaleKind,
    compute_qparams,
    pow2_ceil,
)
from quantlens.scaling.ste import FakeQuantizeSTE, fake_quantize_ste, inside_range, quantize_dequantize_ste

# the scaling layer's fused kernels, by name (see quantlens.formats.KERNELS and kernel_status)
SCALING_KERNELS = {
    "group_min_max": GROUP_MIN_MAX,
    "symmetric_scale": SYMMETRIC_SCALE,
    "asymmetric_scale": ASYMMETRIC_SCALE,
}

__all__ = [
    "MIN_SCALE", "SCALING_KERNELS", "FakeQuantizeSTE", "Granularity", "GroupLayout", "PerBlock", "PerChannel",
    "PerTensor",
    "QuantParams", "ScaleKind", "compute_qparams", "dequantize", "fake_quantize", "fake_quantize_ste",
    "inside_range", "pow2_ceil", "quantize", "quantize_dequantize", "quantize_dequantize_ste",
    "resolve_granularity",
]
