"""MX (OCP Microscaling v1.0) and NVFP4 block formats on hand-computed cases.

MX rule: X = 2^(floor(log2 amax_block) - emax_elem), elements = element(v / X), saturating.
emax_elem: E4M3 8, E5M2 15, E3M2 4, E2M3 2, E2M1 2, INT8 0 (fixed point k / 64).
E2M1 grid: 0, 0.5, 1, 1.5, 2, 3, 4, 6 (ties to the even significand: 5 -> 4, 2.5 -> 2, 0.75 -> 1,
0.25 -> 0, 1.75 -> 2).
"""

from __future__ import annotations

import math

import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.formats import get_format
from quantlens.scaling import (
    PerBlock,
    PerChannel,
    PerTensor,
    compute_qparams,
    dequantize,
    fake_quantize,
    quantize,
    quantize_dequantize,
)


def _block(values, size=32):
    """A block of `size` values: the given ones first, zeros after."""
    out = torch.zeros(size)
    out[: len(values)] = torch.tensor(values, dtype=torch.float32)
    return out


def _check(x, name, expected, expected_scale, granularity=None):
    params = compute_qparams(x, name, granularity)
    expected_scale = torch.tensor(expected_scale, dtype=torch.float32).reshape(params.scale.shape)
    torch.testing.assert_close(params.scale, expected_scale, rtol=0, atol=0, equal_nan=True)
    out = fake_quantize(x, name, params)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(quantize_dequantize(x, name, granularity), out, rtol=0, atol=0, equal_nan=True)
    return params, out


def test_mxfp8_e4m3_shared_exponent_subnormal_and_saturation():
    # amax 1000: floor(log2 1000) = 9, 9 - 8 = 1, X = 2
    #   1000 / 2 = 500 > 448 -> saturates to 448 -> 896
    #   3 / 2 = 1.5 (on the grid) -> 3;  -7 / 2 = -3.5 -> -7
    #   0.01 / 2 = 0.005 = 2.56 subnormal steps of 2^-9 -> 3 * 2^-9 -> 0.01171875
    #   1.1 / 2 = 0.55, binade [0.5, 1) has step 1/16: 8.8 -> 9/16 = 0.5625 -> 1.125
    x = _block([1000, 3, 0.01, -7, 1.1])
    expected = _block([896, 3, 0.01171875, -7, 1.125])
    _check(x, "mxfp8_e4m3", expected, [2.0])


def test_mxfp4_ties_saturation_and_large_scales():
    rows = torch.stack([
        _block([5, 0.25, 0.75, 2.5, -5]),  # amax 5: floor 2, 2 - 2 = 0, X = 1
        _block([7.9, 1, 0.1]),  # amax 7.9: X = 1, 7.9 saturates to 6; 0.1 < 0.25 -> 0
        _block([100, 20, -36]),  # amax 100: floor 6, X = 2^4: 6.25 -> 6, 1.25 -> 1 (tie), -2.25 -> -2
    ])
    expected = torch.stack([
        _block([4, 0, 1, 2, -4]),
        _block([6, 1, 0]),
        _block([96, 16, -32]),
    ])
    _check(rows, "mxfp4", expected, [[1.0], [1.0], [16.0]])


def test_mx_all_zero_block_and_nan_block():
    x = torch.stack([torch.zeros(32), _block([1.0, math.nan, 2.0]), _block([0.5])])
    _check(x, "mxfp4", torch.stack([torch.zeros(32), torch.full((32,), math.nan), _block([0.5])]),
                         [[2.0**-127], [math.nan], [0.125]])
    # X for 0.5: floor(log2 0.5) = -1, -1 - 2 = -3 -> 1/8; 0.5 * 8 = 4 -> 4 / 8 = 0.5


def test_mx_inf_makes_the_block_nan():
    out = quantize_dequantize(_block([math.inf, 1.0]).reshape(1, 32), "mxfp8_e5m2")
    assert torch.isnan(out).all()


def test_mx_ragged_last_block():
    # 40 values: a block of 32 and a ragged block of 8. Block 0: amax 5, X = 1.
    # Block 1: amax 0.6, floor(log2 0.6) = -1, -1 - 2 = -3, X = 1/8: 0.3 * 8 = 2.4 -> 2 -> 0.25,
    #          0.6 * 8 = 4.8 -> 4 -> 0.5, -0.1 * 8 = -0.8 -> -1 -> -0.125
    x = torch.cat([_block([5.0, 1.6]), torch.tensor([0.3, 0.6, -0.1, 0, 0, 0, 0, 0])])
    expected = torch.cat([_block([4.0, 1.5]), torch.tensor([0.25, 0.5, -0.125, 0, 0, 0, 0, 0])])
    params, _ = _check(x, "mxfp4", expected, [1.0, 0.125])
    assert params.scale.shape == (2,)


def test_mx_blocks_along_axis_0():
    # (32, 2), blocks down the columns: column 0 amax 5 (X = 1), column 1 amax 0.6 (X = 1/8)
    x = torch.stack([_block([5.0, 2.5]), _block([0.6, 0.3])], dim=1)
    expected = torch.stack([_block([4.0, 2.0]), _block([0.5, 0.25])], dim=1)
    params, _ = _check(x, "mxfp4", expected, [[1.0, 0.125]], PerBlock(32, 0))
    assert params.scale.shape == (1, 2)


def test_mxint8_fixed_point_elements():
    # amax 1: floor 0, 0 - 0 = 0, X = 1: elements are k / 64: 0.3 * 64 = 19.2 -> 19 -> 0.296875
    # amax 1.99: X = 1: 127.36 -> 127 -> 1.984375;  amax 3: floor 1, X = 2: 1.5 * 64 = 96 -> 3
    x = torch.stack([_block([1.0, 0.3, -1.0]), _block([1.99]), _block([3.0, -0.01])])
    expected = torch.stack([_block([1.0, 0.296875, -1.0]), _block([1.984375]), _block([3.0, 0.0])])
    _check(x, "mxint8", expected, [[1.0], [1.0], [2.0]])
    q = quantize(x, "mxint8", compute_qparams(x, "mxint8"))
    assert torch.equal(q * 64, torch.round(q * 64)) and q.abs().max() <= 127 / 64


@pytest.mark.parametrize("name, emax", [
    ("mxfp8_e4m3", 8), ("mxfp8_e5m2", 15), ("mxfp6_e3m2", 4), ("mxfp6_e2m3", 2), ("mxfp4", 2),
])
def test_mx_scale_is_two_to_the_floor_log2_minus_emax(name, emax):
    for amax in (1.0, 1.99, 3.0, 1000.0, 2.0**-100):
        x = _block([amax])
        expected = 2.0 ** (math.floor(math.log2(amax)) - emax)
        assert compute_qparams(x, name).scale.item() == expected


def test_mx_scale_clamps_to_e8m0():
    tiny = _block([2.0**-140])  # -140 - 8 = -148 -> clamped to -127; 2^-140 / 2^-127 = 2^-13 -> 0
    params = compute_qparams(tiny, "mxfp8_e4m3")
    assert params.scale.item() == 2.0**-127 and fake_quantize(tiny, "mxfp8_e4m3", params).abs().max() == 0
    huge = _block([3.0e38])  # floor(log2 3e38) = 127, 127 - 2 = 125; 3e38 / 2^125 = 7.05 -> 6
    out = quantize_dequantize(huge, "mxfp4")
    assert out[0].item() == 6 * 2.0**125


def test_nvfp4_hand_computed():
    # amax_tensor = 2688 -> tensor_scale = 2688 / (448 * 6) = 1
    # block 0: amax 2688 -> e4m3(2688 / 6) = 448; 2688/448 = 6 -> 2688; 1000/448 = 2.23 -> 2 -> 896;
    #          -100/448 = -0.22 -> -0
    # block 1: amax 24 -> e4m3(4) = 4; 24/4 = 6 -> 24; 7/4 = 1.75 (tie) -> 2 -> 8; 10/4 = 2.5 (tie)
    #          -> 2 -> 8; 1/4 = 0.25 (tie) -> 0
    # block 2: amax 100 -> e4m3(16.67) = 16 (binade [16, 32) has step 2); 100/16 = 6.25 -> 6 -> 96;
    #          50/16 = 3.125 -> 3 -> 48
    x = torch.cat([_block([2688, 1000, -100], 16), _block([24, 7, 10, 1], 16), _block([100, 50], 16)]).reshape(1, 48)
    expected = torch.cat([_block([2688, 896, -0.0], 16), _block([24, 8, 8, 0], 16), _block([96, 48], 16)])
    expected = expected.reshape(1, 48)
    params, out = _check(x, "nvfp4", expected, [[448.0, 4.0, 16.0]])
    assert params.tensor_scale.item() == 1.0
    assert out[0, 2].item() == 0 and math.copysign(1, out[0, 2].item()) == -1


def test_nvfp4_tensor_scale_and_calibrated_amax():
    # amax 5376 -> tensor_scale 2; block amax 5376 -> e4m3(5376 / 6 / 2) = 448; 5376 / 896 = 6
    x = _block([5376.0, 896.0], 16).reshape(1, 16)
    params = compute_qparams(x, "nvfp4")
    assert params.tensor_scale.item() == 2.0 and params.scale.item() == 448.0
    assert fake_quantize(x, "nvfp4", params)[0, :2].tolist() == [5376.0, 896.0]
    # a calibrated per-tensor amax smaller than the data: the block scale saturates at 448
    calibrated = compute_qparams(x, "nvfp4", amax=2688.0)
    assert calibrated.tensor_scale.item() == 1.0 and calibrated.scale.item() == 448.0
    assert fake_quantize(x, "nvfp4", calibrated)[0, 0].item() == 2688.0


def test_nvfp4_zero_tensor_tiny_block_and_nan():
    zeros = torch.zeros(2, 16)
    assert torch.equal(quantize_dequantize(zeros, "nvfp4"), zeros)
    # block 1 amax 1e-6: 1e-6 / 6 rounds to 0 in E4M3 -> its elements are 0
    x = torch.cat([_block([2688.0], 16), _block([1e-6], 16)]).reshape(1, 32)
    params = compute_qparams(x, "nvfp4")
    assert params.scale.reshape(-1).tolist() == [448.0, 0.0]
    assert fake_quantize(x, "nvfp4", params)[0, 16].item() == 0.0
    with_nan = x.clone()
    with_nan[0, 3] = math.nan
    assert torch.isnan(quantize_dequantize(with_nan, "nvfp4")).all()


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8", "nvfp4"])
def test_block_outputs_are_grid_times_scale(name):
    fmt = get_format(name)
    x = torch.randn(6, 70, generator=torch.Generator().manual_seed(5)) * torch.logspace(-3, 3, 70)
    params = compute_qparams(x, fmt)
    assert params.scale.shape == (6, -(-70 // fmt.block_size))
    q = quantize(x, fmt, params)
    assert torch.isin(q, fmt.grid()).all()
    out = fake_quantize(x, fmt, params)
    assert torch.equal(out.view(torch.int32), dequantize(q, fmt, params).view(torch.int32))


def test_block_formats_need_per_block():
    with pytest.raises(ConfigError, match="block format"):
        compute_qparams(torch.ones(32), "mxfp4", PerTensor())
    with pytest.raises(ConfigError, match="block format"):
        quantize_dequantize(torch.ones(4, 32), "nvfp4", PerChannel(0))
    with pytest.raises(ConfigError, match="own maximum"):
        compute_qparams(torch.ones(32), "mxfp4", amax=1.0)
    with pytest.raises(ConfigError, match="scale_kind"):
        compute_qparams(torch.ones(32), "mxfp4", scale_kind="pow2")
    # a non-standard block size is allowed (and changes the scale shape)
    assert compute_qparams(torch.ones(4, 32), "mxfp4", PerBlock(16)).scale.shape == (4, 2)
