"""Max calibration: the running minimum and maximum of every tensor seen."""

from __future__ import annotations

import torch

from quantlens.observers._common import group_rows, reject_unknown
from quantlens.observers.base import OBSERVERS


@OBSERVERS.register("max")
class MinMaxObserver:
    """Running min/max over all calibration batches; `axis` None for one group, else per index on axis.

    NaN in the data propagates into the range (aminmax), so scales built from it are NaN.
    """

    def __init__(self, fmt=None, axis: int | None = None, **unknown) -> None:
        reject_unknown("max", unknown, ())
        self.fmt = fmt  # unused: the range is the data's
        self.axis = axis
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        if self.axis is None:
            lo, hi = torch.aminmax(x.detach().float())
        else:
            lo, hi = torch.aminmax(group_rows(x, self.axis), dim=1)  # (C, rest): one row per channel
        if self.min is None:
            self.min, self.max = lo, hi
        else:
            self.min, self.max = self.combine(lo, hi)

    def combine(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The range after a batch whose own range is (lo, hi): the running extremes."""
        return torch.minimum(self.min, lo), torch.maximum(self.max, hi)

    @property
    def calibrated(self) -> bool:
        return self.min is not None

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min is None:
            raise RuntimeError("observer has seen no data")
        return self.min, self.max
