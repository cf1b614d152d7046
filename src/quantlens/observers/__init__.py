"""Calibration observers: statistics of tensors seen during calibration -> ranges for scales.

Registered in `OBSERVERS` (constructor `(fmt, axis=None, **options)`): max, moving_average,
percentile, entropy (per tensor) and mse.
"""

from quantlens.observers.base import OBSERVERS, Observer
from quantlens.observers.entropy import EntropyObserver
from quantlens.observers.minmax import MinMaxObserver
from quantlens.observers.moving_average import MovingAverageObserver
from quantlens.observers.mse import MseObserver
from quantlens.observers.percentile import PercentileObserver

__all__ = [
    "OBSERVERS", "EntropyObserver", "MinMaxObserver", "MovingAverageObserver", "MseObserver", "Observer",
    "PercentileObserver",
]
