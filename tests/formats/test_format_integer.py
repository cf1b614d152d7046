"""Integer fake quantization against torch.fake_quantize_* and a numpy reference (ties to even).

Outputs are compared by value: torch can return -0.0 where quantlens returns +0.0 (an integer
code has no sign of zero).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.formats import FORMATS, IntFormat, get_format
from quantlens.scaling import PerChannel, PerTensor, compute_qparams, fake_quantize, quantize, quantize_dequantize

INT_NAMES = [n for n, f in FORMATS.items() if isinstance(f, IntFormat)]
F32 = np.float32


def _numpy_reference(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """q = clip(rint(x * (1/scale)) + zp), out = (q - zp) * scale, all in float32 (np.rint: ties to even)."""
    inv = (F32(1) / scale.astype(F32)).astype(F32)
    q = np.clip(np.rint((x * inv).astype(F32)) + zero_point.astype(F32), fmt.qmin, fmt.qmax).astype(F32)
    return ((q - zero_point.astype(F32)) * scale.astype(F32)).astype(F32)


def _assert_values_equal(a: torch.Tensor, b: torch.Tensor):
    a, b = a.numpy(), b.numpy()
    ok = (a == b) | (np.isnan(a) & np.isnan(b))
    assert ok.all(), f"{int((~ok).sum())} mismatches, e.g. {a[~ok][:5]} vs {b[~ok][:5]}"


@pytest.mark.parametrize("path", ["auto", "eager"])
@pytest.mark.parametrize("name", INT_NAMES)
def test_per_tensor_matches_torch_and_numpy(name, path):
    fmt = get_format(name)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(300_000, generator=gen) * 3 + (1.0 if not fmt.symmetric else 0.0)
    params = compute_qparams(x, fmt, PerTensor())
    out = fake_quantize(x, fmt, params, path=path)
    scale, zp = float(params.scale.reshape(())), int(params.zero_point.reshape(()))
    expected = torch.fake_quantize_per_tensor_affine(x, scale, zp, fmt.qmin, fmt.qmax)
    _assert_values_equal(out, expected)
    reference = _numpy_reference(x.numpy(), params.scale.numpy(), params.zero_point.numpy(), fmt)
    _assert_values_equal(out, torch.from_numpy(reference))


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["int8", "uint8", "int4", "int8_asym", "int16"])
def test_per_channel_matches_torch(name, axis):
    fmt = get_format(name)
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(16, 24, 3, generator=gen) * torch.linspace(0.1, 4, 24).reshape(1, 24, 1)
    params = compute_qparams(w, fmt, PerChannel(axis))
    expected_shape = [1, 1, 1]
    expected_shape[axis] = w.shape[axis]
    assert tuple(params.scale.shape) == tuple(expected_shape)
    out = fake_quantize(w, fmt, params)
    expected = torch.fake_quantize_per_channel_affine(w, params.scale.reshape(-1), params.zero_point.reshape(-1),
                                                      axis % 3, fmt.qmin, fmt.qmax)
    _assert_values_equal(out, expected)


def test_symmetric_scale_is_amax_over_qmax():
    x = torch.tensor([-2.0, 0.5, 1.0])
    params = compute_qparams(x, "int8")
    assert params.scale.item() == float(F32(2.0) / F32(127)) and params.zero_point.item() == 0
    assert compute_qparams(x, "int4").scale.item() == float(F32(2.0) / F32(7))


def test_asymmetric_scale_and_zero_point():
    x = torch.tensor([-1.0, 0.0, 3.0])
    params = compute_qparams(x, "uint8")
    scale = F32(4.0) / F32(255)
    assert params.scale.item() == float(scale)
    assert params.zero_point.item() == 0 - round(float(F32(-1.0) / scale))  # 64
    # a range that does not hold 0 is widened to hold it: zero stays exact
    params = compute_qparams(torch.tensor([2.0, 5.0]), "uint8")
    assert params.zero_point.item() == 0 and fake_quantize(torch.tensor([0.0]), "uint8", params).item() == 0.0


def test_ties_round_to_even():
    scale = 0.25  # power of two: x * (1/scale) is exact, so these are exact ties
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 3.5]) * scale
    out = fake_quantize(x, "int8", compute_qparams(x, "int8", amax=127 * scale))
    assert (out / scale).tolist() == [0, 2, 2, 0, -2, 4]


def test_saturation_nan_and_inf():
    params = compute_qparams(torch.zeros(1), "int8", amax=1.27)  # scale 0.01
    x = torch.tensor([5.0, -5.0, math.inf, -math.inf, math.nan, 1.0])
    out = fake_quantize(x, "int8", params)
    s = params.scale.item()
    top, bottom = float(F32(127) * F32(s)), float(F32(-128) * F32(s))
    assert out[:4].tolist() == [top, bottom, top, bottom]
    assert math.isnan(out[4].item()) and out[5].item() == float(F32(100) * F32(s))
    narrow_params = compute_qparams(torch.zeros(1), "int8_narrow", amax=1.27)
    narrow = fake_quantize(torch.tensor([-5.0]), "int8_narrow", narrow_params)
    assert narrow.item() == float(F32(-127) * F32(s))


def test_nan_in_the_data_makes_its_group_nan():
    x = torch.tensor([[1.0, math.nan], [1.0, 2.0]])
    out = quantize_dequantize(x, "int8", PerChannel(0))
    assert torch.isnan(out[0]).all() and not torch.isnan(out[1]).any()


def test_zero_amax_gives_scale_one_and_zeros():
    params = compute_qparams(torch.zeros(4), "int8")
    assert params.scale.item() == 1.0
    assert fake_quantize(torch.zeros(4), "int8", params).tolist() == [0.0] * 4
    tiny = compute_qparams(torch.tensor([1e-42]), "int8")  # amax/127 underflows: raised to 2^-126
    assert tiny.scale.item() == 2.0**-126


def test_pow2_scale_rounds_up():
    params = compute_qparams(torch.tensor([3.0]), "int8", scale_kind="pow2")
    assert params.scale.item() == 2.0**-5  # 3/127 = 0.0236 -> 1/32
    exact = compute_qparams(torch.tensor([127 * 0.125]), "int8", scale_kind="pow2")
    assert exact.scale.item() == 0.125


def test_calibrated_statistics():
    w = torch.randn(4, 8)
    per_channel = compute_qparams(w, "int8", PerChannel(0), amax=torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert per_channel.scale.reshape(-1).tolist() == [float(F32(a) / F32(127)) for a in (1, 2, 3, 4)]
    from_range = compute_qparams(w, "int8", min_val=-3.0, max_val=1.0)
    assert from_range.scale.item() == float(F32(3.0) / F32(127))
    with pytest.raises(ConfigError, match="needs 1 or 4"):
        compute_qparams(w, "int8", PerChannel(0), amax=torch.ones(3))
    with pytest.raises(ConfigError, match=">= 0"):
        compute_qparams(w, "int8", amax=-1.0)
    with pytest.raises(ConfigError, match="min_val and max_val"):
        compute_qparams(w, "uint8", amax=1.0)


def test_codes_are_integers_in_range():
    x = torch.randn(1000) * 5
    for name in ("int8", "uint8", "int4_asym", "int2"):
        fmt = get_format(name)
        params = compute_qparams(x, fmt)
        q = quantize(x, fmt, params)
        assert torch.equal(q, torch.round(q)) and q.min() >= fmt.qmin and q.max() <= fmt.qmax
