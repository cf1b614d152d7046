"""Granularity, scale computation and the compliance contract of the tensor-level functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.formats import get_format
from quantlens.scaling import (
    GroupLayout,
    PerBlock,
    PerChannel,
    PerTensor,
    QuantParams,
    compute_qparams,
    dequantize,
    fake_quantize,
    pow2_ceil,
    quantize,
    quantize_dequantize,
)

from ._reference import same_bits


@pytest.mark.parametrize("shape, granularity, scale_shape", [
    ((8, 3, 5, 5), PerTensor(), (1, 1, 1, 1)),
    ((8, 3, 5, 5), PerChannel(0), (8, 1, 1, 1)),  # the docstring example (O, I, kH, kW)
    ((4, 16, 7, 7), PerChannel(1), (1, 16, 1, 1)),
    ((4, 16, 7, 7), PerChannel(-1), (1, 1, 1, 7)),
    ((10, 70), PerBlock(32, -1), (10, 3)),
    ((70, 10), PerBlock(32, 0), (3, 10)),
    ((2, 40, 3), PerBlock(16, 1), (2, 3, 3)),
    ((), PerTensor(), ()),
])
def test_scale_shapes(shape, granularity, scale_shape):
    x = torch.randn(shape)
    params = compute_qparams(x, "int8", granularity)
    assert tuple(params.scale.shape) == scale_shape == GroupLayout.of(shape, granularity).scale_shape
    assert params.zero_point.shape == params.scale.shape and params.zero_point.dtype == torch.int32
    assert fake_quantize(x, "int8", params).shape == x.shape


def test_per_channel_scale_uses_each_channels_amax():
    x = torch.zeros(2, 3, 4)
    x[:, 0, 0], x[:, 1, 1], x[:, 2, 2] = torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.5]), torch.tensor([0.0, 0.0])
    params = compute_qparams(x, "fp8_e4m3", PerChannel(1))
    f32 = np.float32
    assert params.scale.reshape(-1).tolist() == [float(f32(2) / f32(448)), float(f32(4) / f32(448)), 1.0]


def test_per_block_ragged_along_a_middle_axis_matches_a_padded_reference():
    x = torch.randn(3, 45, 2)
    out = quantize_dequantize(x, "fp4_e2m1", PerBlock(16, 1))
    for start in range(0, 45, 16):  # each block on its own, with its own amax
        piece = x[:, start:start + 16, :]
        amax = piece.abs().amax(dim=1, keepdim=True)
        scale = amax / 6
        params = QuantParams(scale, torch.zeros_like(scale, dtype=torch.int32), torch.tensor(1.0), PerBlock(16, 1))
        ref = fake_quantize(piece, "fp4_e2m1", params)
        assert torch.equal(out[:, start:start + 16, :], ref)



@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4", "fp8_e4m3"])
def test_an_axis_shorter_than_one_block_is_one_block_without_a_padding_copy(fmt):
    # 16 channels, blocks of 32 (MX on a ResNet's first stage): one short block per position
    x = torch.randn(2, 16, 3, 3)
    layout = GroupLayout.of(x.shape, PerBlock(32, 1))
    assert not layout.ragged and layout.arrange(x).data_ptr() == x.data_ptr()
    padded = torch.cat([x, torch.zeros(2, 16, 3, 3)], dim=1)  # the zero-padded reference: same blocks
    ref = quantize_dequantize(padded, fmt, PerBlock(32, 1))[:, :16]
    assert torch.equal(quantize_dequantize(x, fmt, PerBlock(32, 1)), ref)

@pytest.mark.parametrize("bad, match", [
    (lambda: PerBlock(0), "positive"), (lambda: PerBlock(-3), "positive"), (lambda: PerBlock(2.5), "positive"),
    (lambda: PerChannel(1.0), "integer"),
])
def test_bad_granularity_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        bad()


@pytest.mark.parametrize("granularity", [PerChannel(2), PerChannel(-3), PerBlock(8, 5)])
def test_axis_out_of_range_refused(granularity):
    with pytest.raises(ConfigError, match="out of range for a 2-D tensor"):
        quantize_dequantize(torch.ones(4, 4), "int8", granularity)


def test_other_bad_inputs():
    with pytest.raises(ConfigError, match="0-D"):
        compute_qparams(torch.tensor(1.0), "int8", PerChannel(0))
    with pytest.raises(ValueError, match="floating-point"):
        quantize_dequantize(torch.ones(3, dtype=torch.int32), "int8")
    with pytest.raises(ValueError, match="rounding"):
        quantize_dequantize(torch.ones(3), "int8", rounding="up")
    with pytest.raises(ConfigError, match="scale_kind"):
        quantize_dequantize(torch.ones(3), "int8", scale_kind="fp16")
    params = compute_qparams(torch.ones(4, 4), "int8", PerChannel(0))
    with pytest.raises(ConfigError, match="needs"):
        fake_quantize(torch.ones(5, 4), "int8", params)
    with pytest.raises(ConfigError, match="granularity"):
        compute_qparams(torch.ones(3), "int8", "per_tensor")


FORMAT_GRANULARITY = [
    ("int8", PerTensor()), ("int8", PerChannel(1)), ("uint8", PerChannel(0)), ("int4", PerBlock(32, -1)),
    ("int8_asym", PerBlock(8, 0)), ("fp8_e4m3", PerTensor()), ("fp8_e5m2", PerChannel(0)),
    ("fp6_e2m3", PerBlock(32)), ("fp4_e2m1", PerBlock(16, 0)), ("fp4_e3m0", PerTensor()), ("e8m0", PerTensor()),
    ("bf16", PerTensor()), ("mxfp6_e3m2", None), ("mxint8", PerBlock(32, 0)), ("nvfp4", None),
]


# Block formats define their own scales: no pow2 variant for them.
SCALED_CASES = [(name, granularity, kind) for name, granularity in FORMAT_GRANULARITY for kind in ("fp32", "pow2")
                if kind == "fp32" or get_format(name).__class__.__name__ != "BlockFormat"]


@pytest.mark.parametrize("name, granularity, scale_kind", SCALED_CASES)
def test_outputs_are_grid_values_times_scale(name, granularity, scale_kind):
    fmt = get_format(name)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(12, 40, generator=gen) * torch.logspace(-2, 2, 40)
    if name == "e8m0":
        x = x.abs() + 1e-3
    params = compute_qparams(x, fmt, granularity, scale_kind=scale_kind)
    if scale_kind == "pow2":
        m, _ = torch.frexp(params.scale)
        assert torch.all(m == 0.5)
    q = quantize(x, fmt, params)
    grid = fmt.grid()
    assert torch.isin(q, grid).all(), "every quantized value lies on the format's grid"
    out = fake_quantize(x, fmt, params)
    assert same_bits(out.numpy(), dequantize(q, fmt, params).numpy()).all(), "fake_quantize == dequantize(quantize)"
    assert same_bits(out.numpy(), quantize_dequantize(x, fmt, granularity, scale_kind=scale_kind).numpy()).all()


@pytest.mark.parametrize("name, granularity", FORMAT_GRANULARITY)
def test_requantizing_an_output_returns_it_unchanged(name, granularity):
    """Outputs are fixed points of fake_quantize at the same scales (what nn/compliance.py checks)."""
    x = torch.randn(12, 40, generator=torch.Generator().manual_seed(12)) * torch.logspace(-2, 2, 40)
    if name == "e8m0":
        x = x.abs() + 1e-3
    params = compute_qparams(x, name, granularity)
    y = fake_quantize(x, name, params)
    assert same_bits(fake_quantize(y, name, params).numpy(), y.numpy()).all()


def test_minifloat_scale_maps_amax_to_max():
    x = torch.tensor([-3.0, 1.0, 2.0])
    params = compute_qparams(x, "fp8_e4m3")
    assert params.scale.item() == float(np.float32(3) / np.float32(448))
    out = fake_quantize(x, "fp8_e4m3", params)
    assert abs(out[0].item() + 3.0) < 1e-6  # the largest magnitude lands on +-448 * scale


def test_nan_handling():
    x = torch.tensor([[1.0, math.nan, 3.0], [1.0, 2.0, 3.0]])
    computed = quantize_dequantize(x, "fp8_e4m3", PerChannel(0))  # NaN scale for row 0
    assert torch.isnan(computed[0]).all() and not torch.isnan(computed[1]).any()
    given = fake_quantize(x, "fp8_e4m3", compute_qparams(x, "fp8_e4m3", amax=3.0))  # NaN stays elementwise
    assert torch.isnan(given).sum() == 1 and torch.isnan(given[0, 1])
    assert torch.isnan(compute_qparams(x, "int8").scale).all()


def test_zero_and_tiny_amax():
    for name in ("int8", "fp8_e4m3", "fp4_e2m1", "uint8"):
        params = compute_qparams(torch.zeros(3, 5), name, PerChannel(0))
        assert torch.all(params.scale == 1.0)
        assert torch.equal(fake_quantize(torch.zeros(3, 5), name, params), torch.zeros(3, 5))
    tiny = compute_qparams(torch.tensor([1e-44, -1e-45]), "fp8_e4m3")
    assert tiny.scale.item() == 2.0**-126
    assert torch.isfinite(fake_quantize(torch.tensor([1e-44]), "fp8_e4m3", tiny)).all()


def test_pow2_ceil():
    s = torch.tensor([1.0, 1.5, 0.3, 2.0**-130, 3e38, math.nan])
    out = pow2_ceil(s)
    assert out[:5].tolist() == [1.0, 2.0, 0.5, 2.0**-130, 2.0**127] and math.isnan(out[5].item())


def test_half_inputs_and_empty_tensors():
    x = torch.randn(4, 8).to(torch.bfloat16)
    out = quantize_dequantize(x, "int8", PerChannel(0))
    assert out.dtype == torch.float32 and torch.equal(out, quantize_dequantize(x.float(), "int8", PerChannel(0)))
    empty = torch.zeros(0, 8)
    assert quantize_dequantize(empty, "int8", PerChannel(1)).shape == (0, 8)
    assert quantize_dequantize(empty, "mxfp4").shape == (0, 8)


def test_non_contiguous_inputs():
    w = torch.randn(40, 24)
    for name, granularity in (("int8", PerChannel(0)), ("fp4_e2m1", PerBlock(16, 0)), ("mxfp4", None)):
        transposed = w.t()
        assert not transposed.is_contiguous()
        out = quantize_dequantize(transposed, name, granularity)
        assert torch.equal(out, quantize_dequantize(transposed.contiguous(), name, granularity))


def test_inputs_are_not_modified():
    x = torch.randn(4, 33)
    before = x.clone()
    for name in ("int8", "fp8_e4m3", "mxfp4", "nvfp4"):
        quantize_dequantize(x, name, PerBlock(16) if name in ("int8", "fp8_e4m3") else None)
    assert torch.equal(x, before)
