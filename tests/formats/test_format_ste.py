"""Straight-through gradients: identity, or zero outside the representable range when clipped."""

from __future__ import annotations

import math

import torch

from quantlens.scaling import (
    PerChannel,
    compute_qparams,
    fake_quantize,
    fake_quantize_ste,
    inside_range,
    quantize_dequantize,
    quantize_dequantize_ste,
)


def test_forward_equals_fake_quantize_and_gradient_passes_through():
    x = torch.randn(4, 40, requires_grad=True)
    for name in ("int8", "fp8_e4m3", "mxfp4", "nvfp4"):
        x.grad = None
        y = quantize_dequantize_ste(x, name)
        assert torch.equal(y, quantize_dequantize(x.detach(), name))
        (y * 3).sum().backward()
        assert torch.equal(x.grad, torch.full_like(x, 3.0))


def test_clipped_gradient_is_zero_outside_the_range():
    params = compute_qparams(torch.zeros(1), "int8", amax=1.27)  # range [-128, 127] * 0.01
    x = torch.tensor([-2.0, -1.28, -1.29, 0.5, 1.27, 1.3, math.inf, math.nan], requires_grad=True)
    fake_quantize_ste(x, "int8", params, clip_gradient=True).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    x.grad = None
    fake_quantize_ste(x, "int8", params).sum().backward()
    assert x.grad.tolist() == [1.0] * 8


def test_clipped_range_of_asymmetric_and_float_formats():
    x = torch.tensor([-1.0, 0.0, 3.0])
    params = compute_qparams(x, "uint8")  # covers [-1, 3]
    probe = torch.tensor([-1.5, -1.0, 2.99, 3.5])
    assert inside_range(probe, "uint8", params).tolist() == [False, True, True, False]
    fp8 = compute_qparams(torch.zeros(1), "fp8_e4m3", amax=448.0)  # scale 1
    probe = torch.tensor([-449.0, -448.0, 448.0, 449.0])
    assert inside_range(probe, "fp8_e4m3", fp8).tolist() == [False, True, True, False]
    w = torch.randn(3, 8)
    per_channel = compute_qparams(w, "int4", PerChannel(0))
    assert inside_range(w, "int4", per_channel).sum() >= 3 * 7  # all but the negative extremes fit


def test_gradient_keeps_the_input_dtype_and_scales_get_none():
    x = torch.randn(8, 32, dtype=torch.bfloat16, requires_grad=True)
    y = quantize_dequantize_ste(x, "mxfp8_e4m3", clip_gradient=True)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16


def test_weights_once_activations_per_call():
    """The intended module usage: weights fake-quantized once and cached, activations each call."""
    w = torch.randn(16, 8)
    w_params = compute_qparams(w, "int8", PerChannel(0))
    w_q = fake_quantize(w, "int8", w_params)
    a = torch.randn(4, 8, requires_grad=True)
    out = quantize_dequantize_ste(a, "fp8_e4m3") @ w_q.t()
    out.sum().backward()
    assert a.grad.shape == a.shape and torch.isfinite(a.grad).all()
