"""Percentile observer: accurate to a bin width against the order statistic, order-free, bounded memory."""

from __future__ import annotations

import math

import pytest
import torch

from quantlens.observers import PercentileObserver


def _order_statistic(x: torch.Tensor, q: float, dim: int = -1) -> torch.Tensor:
    """The smallest value with at least q * N values at or below it (what a histogram resolves to
    a bin; torch.quantile interpolates between neighbours, which in sparse tails are bins apart)."""
    n = x.shape[dim]
    return x.sort(dim=dim).values.select(dim, math.ceil(q * n) - 1)


def _feed(obs, x, parts):
    for part in x.split(x.shape[0] // parts):
        obs.update(part)
    return obs.range()


def test_symmetric_percentile_of_abs_to_a_bin_width():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200_000, generator=g) * 3.0
    lo, hi = _feed(PercentileObserver("int8", None, percentile=99.9), x, 8)
    expected = _order_statistic(x.abs(), 0.999)
    width = 2 * x.abs().max() / 2048  # the histogram's bins are at most this wide
    assert abs(hi - expected) <= width and lo == -hi


def test_growing_range_gives_the_same_histogram_in_any_batch_order():
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(10_000, generator=g) * s for s in (0.01, 1.0, 50.0, 0.3)])
    a = PercentileObserver("int8", None, percentile=99.0)
    b = PercentileObserver("int8", None, percentile=99.0)
    _feed(a, x, 4)
    _feed(b, x.flip(0), 4)
    assert torch.equal(a.hist.counts, b.hist.counts)
    assert torch.equal(a.range()[1], b.range()[1])
    assert a.hist.counts.numel() == 2 * 2048  # bounded: does not grow with the range or the data


def test_asymmetric_uses_both_tails_and_never_negative_data_starts_at_zero():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(100_000, generator=g) + 2.0
    lo, hi = _feed(PercentileObserver("int8_asym", None, percentile=99.0), x, 5)
    width = 2 * x.abs().max() / 2048
    assert abs(lo - _order_statistic(x, 0.01)) <= width
    assert abs(hi - _order_statistic(x, 0.99)) <= width
    relu = torch.relu(torch.randn(100_000, generator=g))
    lo, hi = _feed(PercentileObserver("int8", None, percentile=99.0), relu, 5)
    assert lo == 0 and abs(hi - _order_statistic(relu, 0.99)) <= 2 * relu.max() / 2048


def test_per_channel_and_percentile_100_is_the_exact_range():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(16, 500, generator=g) * torch.logspace(-3, 3, 16).reshape(16, 1)
    obs = PercentileObserver("int8", 0, percentile=99.5)
    obs.update(w)
    lo, hi = obs.range()
    expected = _order_statistic(w.abs(), 0.995, dim=1)
    assert torch.all((hi - expected).abs() <= 2 * w.abs().amax(1) / 2048)
    exact = PercentileObserver("int8_asym", 0, percentile=100)
    exact.update(w)
    lo, hi = exact.range()
    assert torch.equal(lo, w.amin(1)) and torch.equal(hi, w.amax(1))


@pytest.mark.parametrize("q", [50.0, 99.99])
def test_all_zero_group_gives_zero(q):
    obs = PercentileObserver("fp8_e4m3", 0, percentile=q)
    obs.update(torch.zeros(2, 10))
    lo, hi = obs.range()
    assert torch.equal(hi, torch.zeros(2)) and torch.equal(lo, torch.zeros(2))
