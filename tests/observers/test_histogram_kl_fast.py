"""The fast paths of the histogram and of the KL search against plain references.

GroupHistogram bins in chunks (in cache on the CPU), skips the floor for never-negative data, and
detects NaN/Inf from the min/max: its counts must equal binning all the data at once at the final
width, floor(x * bins / W) with NaN/Inf as 0. The KL search works on prefix sums over level
boundaries: its levels must be the per-bin levels (floor(j * levels / i), or the nearest grid value
for minifloats) and its KL the direct sum over bins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import quantlens.observers.histogram as histogram
from quantlens.formats import get_format
from quantlens.observers.histogram import GroupHistogram
from quantlens.observers.kl import _integer_bounds, _minifloat_bounds, entropy_stop_bin, kl_divergences


def _binned_at_once(batches: list[torch.Tensor], bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts (G, 2 bins), log2 W (G,)) binning every value at the final width, one value at a time."""
    x = torch.cat(batches, dim=1).double()
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    g = x.shape[0]
    counts = torch.zeros((g, 2 * bins), dtype=torch.int64)
    log2w = torch.empty(g, dtype=torch.int32)
    for r in range(g):
        amax = float(x[r].abs().max()) if x.shape[1] else 0.0
        e = math.frexp(amax)[1] if amax > 0 else histogram.MIN_LOG2_WIDTH  # 2^e > amax
        e = min(max(e, histogram.MIN_LOG2_WIDTH), histogram.MAX_LOG2_WIDTH)
        # float32 product x * (bins / W), as the histogram rounds it
        inv = torch.tensor(bins * 2.0 ** -e, dtype=torch.float32)
        k = torch.clamp(torch.floor(x[r].float() * inv), -bins, bins - 1).long() + bins
        counts[r] = torch.bincount(k, minlength=2 * bins)
        log2w[r] = e
    return counts, log2w


def _check(batches: list[torch.Tensor], bins: int = 2048) -> GroupHistogram:
    h = GroupHistogram(bins)
    for b in batches:
        h.update(b)
    counts, log2w = _binned_at_once(batches, bins)
    assert torch.equal(h.log2_width, log2w)
    assert torch.equal(h.counts, counts)
    return h


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(histogram, "CPU_CHUNK_ELEMENTS", 1000)  # many chunks, a short last one


@pytest.mark.parametrize("bins", [2048, 1000, 16])
def test_signed_and_growing_range_match_binning_at_once(small_chunks, bins):
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(1, 20_001, generator=g) * s for s in (0.01, 1.0, 50.0, 0.3)]
    batches.append(torch.tensor([[-1.0, -0.5, 0.5, 1 - 2**-24, -(1 - 2**-24), -(2.0**-12), 2.0**-12, -0.0]]))
    _check(batches, bins)


def test_never_negative_data_fills_only_the_upper_half(small_chunks):
    g = torch.Generator().manual_seed(1)
    batches = [torch.relu(torch.randn(1, 30_000, generator=g)) * s for s in (1.0, 3.0, 0.1)]
    h = _check(batches)
    assert int(h.counts[0, :2048].sum()) == 0 and int(h.counts.sum()) == 90_000


@pytest.mark.parametrize("relu", [False, True])
def test_per_group_rows_match_binning_at_once(small_chunks, relu):
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(7, 3001, generator=g) * torch.logspace(-3, 3, 7)[:, None] for _ in range(3)]
    if relu:
        batches = [torch.relu(b) for b in batches]
    _check(batches, 512)
    _check(batches, 2048)  # 7 x 4096 bins: a larger index type, chunks of whole rows


def test_nan_and_inf_are_binned_as_zero_and_poison_only_their_group(small_chunks):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5000, generator=g)
    x[0, 5], x[1, 7], x[2, 9] = math.nan, math.inf, -math.inf
    h = _check([torch.randn(4, 100, generator=g), x, torch.randn(4, 100, generator=g) * 100])
    assert h.min[0].isnan() and h.max[1] == math.inf and h.min[2] == -math.inf
    assert torch.isfinite(h.min[3]) and torch.isfinite(h.max[3])
    _check([torch.relu(x[1:2])])  # +Inf in never-negative data


def test_extreme_magnitudes_and_empty_updates():
    g = torch.Generator().manual_seed(4)
    _check([torch.randn(1, 1000, generator=g) * 1e-38, torch.randn(1, 1000, generator=g) * 1e-44])
    _check([torch.randn(1, 1000, generator=g) * 1e38, torch.tensor([[3.4e38, -3.4e38, 1.0]])])  # W capped
    _check([torch.zeros(2, 0), torch.randn(2, 50, generator=g), torch.zeros(2, 0)])
    _check([torch.zeros(1, 100), -torch.zeros(1, 100)])


# ---------------------------------------------------------------------------------------------- KL search

def _levels_from_bounds(bounds: torch.Tensor, n: int) -> torch.Tensor:
    # level of bin j: how many inner bounds are at or below j
    j = torch.arange(n).expand(bounds.shape[0], n).contiguous()
    return torch.searchsorted(bounds[:, 1:-1].contiguous(), j, right=True)


@pytest.mark.parametrize("levels", [8, 128, 255])
def test_integer_bounds_are_the_uniform_merge(levels):
    stops = torch.arange(levels, 700)
    j = torch.arange(699)
    expected = torch.div(j[None, :] * levels, stops[:, None], rounding_mode="floor")
    got = _levels_from_bounds(_integer_bounds(stops, levels), 699)
    inside = j[None, :] < stops[:, None]
    assert torch.equal(got[inside], expected[inside])


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "fp6_e3m2"])
def test_minifloat_bounds_are_the_nearest_grid_value(fmt):
    f = get_format(fmt)
    grid = f.grid()
    grid = grid[grid >= 0] / f.max
    midpoints = ((grid[1:] + grid[:-1]) / 2).contiguous()
    stops = torch.arange(grid.numel(), 3000)
    j = torch.arange(2999)
    centre = (j[None, :].to(torch.float32) + 0.5) / stops[:, None].to(torch.float32)
    expected = torch.searchsorted(midpoints, centre)
    bounds = _minifloat_bounds(stops, midpoints)
    assert torch.all(bounds.diff(dim=1) >= 0) and torch.equal(bounds[:, -1], stops)
    got = _levels_from_bounds(bounds, 2999)
    inside = j[None, :] < stops[:, None]
    assert torch.equal(got[inside], expected[inside])


def _direct_kl(hist: np.ndarray, stop: int, level: np.ndarray) -> float:
    """KL(P || Q) summed over bins, for one candidate; level: (stop,) level of each bin."""
    total = hist.sum()
    p = hist[:stop].copy()
    p[stop - 1] += hist[stop:].sum()
    q = np.zeros(stop)
    for ell in np.unique(level):
        members = level == ell
        nonzero = members & (p > 0)
        if nonzero.any():
            q[nonzero] = hist[:stop][members].sum() / nonzero.sum()
    p, q = p / total, q / hist[:stop].sum() if hist[:stop].sum() > 0 else q
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


@pytest.mark.parametrize("seed", [0, 1])
def test_kl_values_match_the_direct_sum(seed):
    rng = np.random.default_rng(seed)
    hist = np.histogram(np.abs(rng.standard_t(3, 50_000)), bins=300)[0].astype(np.float64)
    hist[rng.integers(0, 300, 40)] = 0
    hist[:3] = 0  # early candidates clip everything: KL +inf
    hist[-1] = 5.0
    stops = torch.arange(8, 301)
    bounds = _integer_bounds(stops, 8)
    got = kl_divergences(torch.from_numpy(hist), stops, bounds)
    for i, kl in zip(stops.tolist(), got.tolist(), strict=True):
        expected = _direct_kl(hist, i, (np.arange(i) * 8) // i)
        if math.isinf(expected):
            assert kl == math.inf, i
        else:
            assert abs(kl - expected) <= 1e-12 * max(1.0, abs(expected)), (i, kl, expected)
    f = get_format("fp4_e2m1")
    grid = f.grid()
    grid = grid[grid >= 0] / f.max
    midpoints = ((grid[1:] + grid[:-1]) / 2).contiguous()
    stops = torch.arange(grid.numel(), 301)
    got = kl_divergences(torch.from_numpy(hist), stops, _minifloat_bounds(stops, midpoints))
    for i, kl in zip(stops.tolist(), got.tolist(), strict=True):
        centre = (torch.arange(i, dtype=torch.float32) + 0.5) / float(i)
        expected = _direct_kl(hist, i, torch.searchsorted(midpoints, centre).numpy())
        assert (kl == expected == math.inf) or abs(kl - expected) <= 1e-12 * max(1.0, abs(expected)), i


def test_search_never_picks_a_candidate_that_clips_everything():
    hist = torch.zeros(600, dtype=torch.float64)
    hist[300:] = 1000.0  # no mass below bin 300: every candidate up to 300 clips all of it
    assert entropy_stop_bin(hist, get_format("int8"), 128) > 300
