"""The observer protocol and its registry (one entry per calibration method)."""

from __future__ import annotations

from typing import Protocol

import torch

from quantlens.registry import Registry


class Observer(Protocol):
    """Accumulates statistics over calibration batches, grouped along one axis (or none)."""

    def update(self, x: torch.Tensor) -> None: ...

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, max) per group: 0-d tensors per tensor, (C,) per channel."""
        ...

    @property
    def calibrated(self) -> bool: ...


OBSERVERS: Registry[type] = Registry("observer")
