"""Stochastic rounding: always a neighbour, unbiased in expectation, reproducible with a seed."""

from __future__ import annotations

import pytest
import torch

from quantlens.formats import BlockFormat, IntFormat, get_format, round_to_grid
from quantlens.scaling import compute_qparams, quantize, quantize_dequantize

N = 200_000


def _draws(value: float, fmt: str, seed: int = 0, path: str = "auto") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return round_to_grid(torch.full((N,), value), fmt, rounding="stochastic", generator=gen, path=path).double()


@pytest.mark.parametrize("value, fmt, lo, hi", [
    (1.03, "fp8_e4m3", 1.0, 1.125),
    (-1.03, "fp8_e4m3", -1.125, -1.0),
    (0.0007, "fp8_e4m3", 0.0, 2.0**-9),  # subnormal range: between 0 and the smallest subnormal
    (300.0, "fp8_e4m3", 288.0, 320.0),
    (5.0, "fp4_e2m1", 4.0, 6.0),
    (0.3, "fp4_e2m1", 0.0, 0.5),
    (3.0, "e8m0", 2.0, 4.0),
    (0.7, "int8", 0.0, 1.0),
    (-2.25, "int4", -3.0, -2.0),
])
def test_neighbours_only_and_unbiased(value, fmt, lo, hi):
    draws = _draws(value, fmt)
    assert set(torch.unique(draws).tolist()) <= {lo, hi}
    x = float(torch.tensor(value, dtype=torch.float32))
    p_up = (x - lo) / (hi - lo)
    standard_error = (hi - lo) * (p_up * (1 - p_up) / N) ** 0.5
    assert abs(draws.mean().item() - x) < 5 * standard_error + 1e-12


def test_grid_values_are_left_alone():
    grid = torch.tensor([0.0, -0.0, 1.0, 1.125, -448.0, 2.0**-9])
    gen = torch.Generator().manual_seed(0)
    out = round_to_grid(grid.repeat(1000), "fp8_e4m3", rounding="stochastic", generator=gen)
    assert torch.equal(out.view(torch.int32), grid.repeat(1000).view(torch.int32))


def test_seeded_generator_is_reproducible_on_both_paths():
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(1))
    runs = [quantize_dequantize(x, "fp4_e2m1", rounding="stochastic", generator=torch.Generator().manual_seed(42),
                                path=p) for p in ("auto", "eager", "eager")]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])
    other = quantize_dequantize(x, "fp4_e2m1", rounding="stochastic", generator=torch.Generator().manual_seed(43))
    assert not torch.equal(runs[0], other)


def test_stochastic_block_and_integer_formats_pick_a_neighbour():
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(2))
    for name in ("mxfp4", "nvfp4", "fp4_e2m1", "int8", "uint8"):
        fmt = get_format(name)
        params = compute_qparams(x, fmt)
        q = quantize(x, fmt, params, rounding="stochastic", generator=torch.Generator().manual_seed(0)).double()
        # x in grid units: x / (scale * tensor_scale), scales repeated over their blocks
        scale = params.scale * params.tensor_scale
        if isinstance(fmt, BlockFormat):
            scale = scale.repeat_interleave(fmt.block_size, dim=-1)
        v = (x * (1.0 / scale)).double()
        if isinstance(fmt, IntFormat):
            v = v + params.zero_point.double()
        if isinstance(fmt, IntFormat):
            grid = torch.arange(fmt.qmin, fmt.qmax + 1.0, dtype=torch.float64)
        else:
            grid = fmt.grid().double()
        i = torch.searchsorted(grid, v.clamp(grid[0], grid[-1]))
        upper, lower = grid[i.clamp(max=len(grid) - 1)], grid[(i - 1).clamp(min=0)]
        assert torch.all((q == upper) | (q == lower)), name
        assert not torch.equal(q, quantize(x, fmt, params).double()), name


def test_saturation_with_stochastic_rounding():
    out = round_to_grid(torch.full((1000,), 460.0), "fp8_e4m3", rounding="stochastic",
                        generator=torch.Generator().manual_seed(0))
    assert out.max().item() == 448.0  # rounding up would give 480, which saturates back to 448
