"""Calibration observers: statistics of tensors seen during calibration -> ranges for scales."""

from quantlens.observers.base import OBSERVERS, Observer
from quantlens.observers.minmax import MinMaxObserver

__all__ = ["OBSERVERS", "MinMaxObserver", "Observer"]
