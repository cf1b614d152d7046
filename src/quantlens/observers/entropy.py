"""Entropy (KL) calibration, TensorRT style, on a histogram of |x| collected across batches.

The histogram (histogram.py) grows its range by exact re-binning, so memory is bounded and the
result does not depend on batch order. Before the search bins[0] is set to bins[1]: the spike of
exact zeros after ReLU would otherwise dominate P and pull the threshold down until most of the
range is clipped. Bins past the largest value are dropped (thresholds above the data clip
nothing), so candidates run from `levels` to the last non-empty bin (kl.py).

Levels (how many grid values the quantizer has in [0, threshold]):
  integer formats  never-negative data on a format with a zero point (uint8, int8_asym): the
                   unsigned grid, qmax - qmin + 1 (256 for 8 bits); otherwise the non-negative half,
                   2^(bits-1) for signed symmetric formats (int8: 128, as TensorRT), qmax + 1 for
                   unsigned symmetric ones (uint8_sym: 256), (qmax - qmin + 1) / 2 for asymmetric
                   formats on signed data. A signed symmetric format (int8) has 128 non-negative
                   codes even for post-ReLU data: its levels stay 128.
  minifloats       the format's own non-negative grid (bins merge by the grid value they round to).
Block formats are refused (their scales follow each block). range(): (0, t) for never-negative
data, (-t, t) otherwise, cut to the observed [min, max] for zero-point formats (their grid need
not be symmetric); NaN for data that held NaN or Inf.
"""

from __future__ import annotations

import torch

from quantlens.errors import ConfigError
from quantlens.formats.types import IntFormat
from quantlens.observers._common import (
    group_rows,
    nan_where_nonfinite,
    number_option,
    reject_unknown,
    scalar_format,
)
from quantlens.observers.base import OBSERVERS
from quantlens.observers.histogram import GroupHistogram
from quantlens.observers.kl import entropy_stop_bin


def integer_levels(fmt: IntFormat, never_negative: bool) -> int:
    """Grid values of `fmt` in [0, threshold] (see the module docstring)."""
    codes = fmt.qmax - fmt.qmin + 1
    if not fmt.symmetric:
        return codes if never_negative else codes // 2
    return fmt.qmax + 1


@OBSERVERS.register("entropy")
class EntropyObserver:
    """Per tensor only (axis must be None). Option `bins` (default 2048): histogram bins over [0, W)."""

    def __init__(self, fmt=None, axis: int | None = None, *, bins: int = 2048, **unknown) -> None:
        reject_unknown("entropy", unknown, ("bins",))
        self.bins = number_option("entropy", "bins", bins, low=16, high=1 << 16, integer=True)
        if axis is not None:
            raise ConfigError("observer 'entropy': entropy calibration is per tensor; use it with per-tensor "
                              "scales (or observer 'mse'/'percentile' per channel)")
        self.fmt = scalar_format("entropy", fmt)
        self.axis = None
        self.hist = GroupHistogram(self.bins)
        self._range: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, x: torch.Tensor) -> None:
        self.hist.update(group_rows(x, None))
        self._range = None

    @property
    def calibrated(self) -> bool:
        return not self.hist.empty

    def threshold(self) -> torch.Tensor:
        """The chosen threshold t (0-d float32), at most max|x|."""
        h = self.hist
        counts = h.abs_counts()[0].to(torch.float64)
        if counts.numel() > 1:
            counts[0] = counts[1]  # remove the spike of exact zeros (post-ReLU)
        nonempty = torch.nonzero(counts).reshape(-1)
        n = int(nonempty[-1]) + 1 if nonempty.numel() else 0
        amax = torch.maximum(-h.min, h.max)[0]
        if n == 0:
            return amax
        never_negative = bool(h.min[0] >= 0)
        levels = integer_levels(self.fmt, never_negative) if isinstance(self.fmt, IntFormat) else None
        stop = entropy_stop_bin(counts[:n], self.fmt, levels)
        return torch.minimum(stop * h.bin_width()[0], amax)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hist
        if h.empty:
            raise RuntimeError("observer has seen no data")
        if self._range is None:
            t = nan_where_nonfinite(self.threshold(), h.min[0], h.max[0])
            lo = torch.where(h.min[0] >= 0, torch.zeros_like(t), -t)
            hi = t
            if isinstance(self.fmt, IntFormat) and not self.fmt.symmetric:
                # a zero-point grid need not span [-t, t]: keep only the part the data reaches, so no
                # codes are spent beyond the observed minimum or maximum
                lo, hi = torch.maximum(lo, h.min[0]), torch.minimum(hi, h.max[0])
            self._range = (nan_where_nonfinite(lo, h.min[0], h.max[0]), nan_where_nonfinite(hi, h.min[0], h.max[0]))
        return self._range
