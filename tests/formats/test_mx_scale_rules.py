"""OCP MX shared-scale rules: floor (the spec), ceil, even, rceil; clipped-block fractions."""

from __future__ import annotations

import math

import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.formats import get_format
from quantlens.formats.blocks import MX_SCALE_RULES, mx_clipped_block_fraction, mx_scales
from quantlens.scaling import PerBlock, compute_qparams, quantize_dequantize

MXFP4 = get_format("mxfp4")
MX_NAMES = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8"]


def test_rules_are_exported():
    assert MX_SCALE_RULES == ("floor", "ceil", "even", "rceil")


@pytest.mark.parametrize("rule, expected, tolerance", [
    ("floor", 0.296, 0.01), ("even", 0.127, 0.01), ("ceil", 0.0, 0.0), ("rceil", 0.0, 0.0)])
def test_clipped_block_fractions_on_gaussian_blocks(rule, expected, tolerance):
    x = torch.randn(64 * 1024, 32, generator=torch.Generator().manual_seed(12))
    assert abs(mx_clipped_block_fraction(x, MXFP4, rule) - expected) <= tolerance


def _reference_exponent(amax: float, fmt, rule: str) -> int:
    """The rules written with math.log2 on float64 (exact for these inputs)."""
    elem = fmt.element
    emax = fmt.element_emax
    if rule == "floor":
        return math.floor(math.log2(amax)) - emax
    if rule == "ceil":
        return math.ceil(math.log2(amax)) - emax
    if rule == "rceil":
        return math.ceil(math.log2(amax / fmt.max))
    mbits = elem.man_bits if hasattr(elem, "man_bits") else elem.bits - 2
    m, e = math.frexp(amax)  # amax = m 2^e, m in [0.5, 1)
    rounded = round(m * 2 ** (mbits + 1)) / 2 ** (mbits + 1)  # Python's round: half to even
    return math.floor(math.log2(rounded * 2.0**e)) - emax


@pytest.mark.parametrize("name", MX_NAMES)
@pytest.mark.parametrize("rule", MX_SCALE_RULES)
def test_each_rule_against_its_definition_and_e8m0_range(name, rule):
    fmt = get_format(name)
    g = torch.Generator().manual_seed(13)
    amax = torch.exp2(torch.rand(600, generator=g) * 40 - 20)
    amax = torch.cat([amax, torch.tensor([1.0, 1.5, 1.75, 1.875, 6.0, 6.5, 7.0, 448.0, 2.0**-140, 3e38])])
    scale = mx_scales(amax, fmt, rule=rule, path="eager")
    m, e = torch.frexp(scale)
    assert torch.all(m == 0.5) and torch.all((e - 1 >= -127) & (e - 1 <= 127))  # powers of two in E8M0
    expected = torch.tensor([max(-127, min(127, _reference_exponent(float(a), fmt, rule))) for a in amax])
    assert torch.equal(e - 1, expected.to(e.dtype))
    if rule in ("ceil", "rceil"):  # these never clip (inside E8M0's range)
        assert torch.all(amax <= scale * fmt.max)


@pytest.mark.parametrize("rule", MX_SCALE_RULES)
def test_zero_nan_and_inf_blocks_keep_their_behaviour(rule):
    scale = mx_scales(torch.tensor([0.0, math.nan, math.inf]), MXFP4, rule=rule)
    assert scale[0] == 2.0**-127 and torch.isnan(scale[1:]).all()
    assert math.isnan(mx_clipped_block_fraction(torch.tensor([[1.0, math.nan]]), MXFP4, rule))


def test_ragged_last_block_and_agreement_with_compute_qparams():
    g = torch.Generator().manual_seed(14)
    x = torch.randn(5, 70, generator=g)  # blocks of 32, 32, 6
    x[:, 64:] *= 40.0
    for rule in MX_SCALE_RULES:
        params = compute_qparams(x, MXFP4, mx_rule=rule)
        assert params.scale.shape == (5, 3)
        amax = torch.stack([x[:, s:s + 32].abs().amax(1) for s in (0, 32, 64)], dim=1)
        assert torch.equal(params.scale, mx_scales(amax, MXFP4, rule=rule))
        expected = float((amax > params.scale * 6.0).float().mean())
        assert mx_clipped_block_fraction(x, MXFP4, rule) == expected


def test_rules_change_the_quantized_values_as_expected():
    x = torch.tensor([[7.0] + [0.5] * 31])  # amax 7: floor clips it to 6, ceil/rceil/even keep 7 ... or 8
    floor = quantize_dequantize(x, MXFP4)
    assert floor[0, 0] == 6.0
    for rule in ("ceil", "even", "rceil"):
        y = quantize_dequantize(x, MXFP4, mx_rule=rule)
        assert y[0, 0] == 8.0  # scale 2: 7 / 2 = 3.5 rounds (to even) onto 4


def test_mx_rule_is_validated():
    x = torch.randn(4, 32)
    with pytest.raises(ConfigError, match="mx_rule.*floor, ceil, even, rceil"):
        compute_qparams(x, MXFP4, mx_rule="round")
    with pytest.raises(ConfigError, match="mx_rule"):
        quantize_dequantize(x, "int8", mx_rule="ceil")
    with pytest.raises(ConfigError, match="mx_rule"):
        compute_qparams(x, "nvfp4", PerBlock(16, -1), mx_rule="rceil")
    compute_qparams(x, "int8", mx_rule="floor")  # the default is accepted everywhere
