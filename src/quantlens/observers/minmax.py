"""Max calibration: the running minimum and maximum of every tensor seen."""

from __future__ import annotations

import torch

from quantlens.observers.base import OBSERVERS


@OBSERVERS.register("max")
class MinMaxObserver:
    """Running min/max over all calibration batches; `axis` None for one group, else per index on axis."""

    def __init__(self, fmt=None, axis: int | None = None) -> None:
        self.fmt = fmt  # unused: the range is the data's
        self.axis = axis
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if self.axis is None:
            lo, hi = torch.aminmax(x)
        else:
            # (..., C, ...) -> (C, rest): one row per channel
            rows = x.movedim(self.axis, 0).reshape(x.shape[self.axis], -1)
            lo, hi = torch.aminmax(rows, dim=1)
        self.min = lo if self.min is None else torch.minimum(self.min, lo)
        self.max = hi if self.max is None else torch.maximum(self.max, hi)

    @property
    def calibrated(self) -> bool:
        return self.min is not None

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min is None:
            raise RuntimeError("observer has seen no data")
        return self.min, self.max
