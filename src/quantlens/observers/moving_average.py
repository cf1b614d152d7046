"""Moving-average calibration: an exponential moving average of each batch's min and max.

As TensorRT's pytorch-quantization and torch.ao's MovingAverageMinMaxObserver do: the first batch
sets the range, then range = momentum * range + (1 - momentum) * batch_range, so single outlier
batches move the range only a little. NaN in a batch propagates into the range.
"""

from __future__ import annotations

import torch

from quantlens.observers._common import number_option, reject_unknown
from quantlens.observers.base import OBSERVERS
from quantlens.observers.minmax import MinMaxObserver


@OBSERVERS.register("moving_average")
class MovingAverageObserver(MinMaxObserver):
    """EMA of per-batch (min, max) per group; option `momentum` in [0, 1) (default 0.9): the
    weight kept by the running value (0: the last batch alone)."""

    def __init__(self, fmt=None, axis: int | None = None, *, momentum: float = 0.9, **unknown) -> None:
        reject_unknown("moving_average", unknown, ("momentum",))
        self.momentum = number_option("moving_average", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        super().__init__(fmt, axis)

    def combine(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.momentum
        return m * self.min + (1.0 - m) * lo, m * self.max + (1.0 - m) * hi
