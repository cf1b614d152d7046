"""Moving-average calibration: an exponential moving average of each batch's min and max.

As TensorRT's pytorch-quantization and torch.ao's MovingAverageMinMaxObserver do: the first batch
sets the range, then range = momentum * range + (1 - momentum) * batch_range, so single outlier
batches move the range only a little. NaN in a batch propagates into the range.
"""

from __future__ import annotations

import torch

from quantlens.observers._common import group_rows, number_option, reject_unknown
from quantlens.observers.base import OBSERVERS


@OBSERVERS.register("moving_average")
class MovingAverageObserver:
    """EMA of per-batch (min, max) per group; option `momentum` in [0, 1) (default 0.9): the
    weight kept by the running value (0: the last batch alone)."""

    def __init__(self, fmt=None, axis: int | None = None, *, momentum: float = 0.9, **unknown) -> None:
        reject_unknown("moving_average", unknown, ("momentum",))
        self.momentum = number_option("moving_average", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.fmt = fmt  # unused: the range is the data's
        self.axis = axis
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        lo, hi = torch.aminmax(group_rows(x, self.axis), dim=1)  # (G,)
        if self.axis is None:
            lo, hi = lo.reshape(()), hi.reshape(())
        if self.min is None:
            self.min, self.max = lo, hi
            return
        m = self.momentum
        self.min = m * self.min + (1.0 - m) * lo
        self.max = m * self.max + (1.0 - m) * hi

    @property
    def calibrated(self) -> bool:
        return self.min is not None

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min is None:
            raise RuntimeError("observer has seen no data")
        return self.min, self.max
