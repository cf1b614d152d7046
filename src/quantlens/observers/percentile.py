"""Percentile calibration: clip each group's range at a percentile of its values.

Memory stays bounded over any number of batches: each group keeps a histogram of 2 * `bins`
signed bins whose range doubles as larger values arrive, merging bins exactly (histogram.py), so
the result does not depend on batch order and is accurate to a bin width (at most
2 * max|x| / bins). An exact method (sorting all values) would need memory growing with the data.

Symmetric formats (symmetric integers, minifloats, block formats): the percentile of |x|, range
(-a, a), or (0, a) for never-negative data. Asymmetric integers: the (100 - p)th and pth
percentiles of x. A percentile of 100 gives the exact min/max. Groups whose data held NaN or Inf
get a NaN range (so their scales are NaN), as with `max`.
"""

from __future__ import annotations

import torch

from quantlens.formats.registry import get_format
from quantlens.observers._common import group_rows, is_asymmetric, nan_where_nonfinite, number_option, reject_unknown
from quantlens.observers.base import OBSERVERS
from quantlens.observers.histogram import GroupHistogram


@OBSERVERS.register("percentile")
class PercentileObserver:
    """Options: `percentile` in (0, 100] (default 99.99); `bins` per sign (default 2048)."""

    def __init__(self, fmt=None, axis: int | None = None, *, percentile: float = 99.99, bins: int = 2048,
                 **unknown) -> None:
        reject_unknown("percentile", unknown, ("percentile", "bins"))
        self.percentile = number_option("percentile", "percentile", percentile, low=0.0, high=100.0, low_open=True)
        self.bins = number_option("percentile", "bins", bins, low=16, high=1 << 16, integer=True)
        self.fmt = None if fmt is None else get_format(fmt)
        self.axis = axis
        self.hist = GroupHistogram(self.bins)

    def update(self, x: torch.Tensor) -> None:
        self.hist.update(group_rows(x, self.axis))

    @property
    def calibrated(self) -> bool:
        return not self.hist.empty

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hist
        if h.empty:
            raise RuntimeError("observer has seen no data")
        q = self.percentile / 100.0
        if q == 1.0:
            lo, hi = h.min, h.max
        elif is_asymmetric(self.fmt):
            lo, hi = h.signed_quantile(1.0 - q), h.signed_quantile(q)
        else:
            a = h.abs_quantile(q)
            lo = torch.where(h.min < 0, -a, torch.zeros_like(a))
            hi = torch.where(h.max > 0, a, torch.zeros_like(a))
        lo, hi = nan_where_nonfinite(lo, h.min, h.max), nan_where_nonfinite(hi, h.min, h.max)
        if self.axis is None:
            lo, hi = lo.reshape(()), hi.reshape(())
        return lo, hi
