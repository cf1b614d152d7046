"""Batches from an in-memory uint8 dataset: no DataLoader workers, no per-sample Python work.

Small image sets (the ones quantlens studies) fit in memory at model resolution; iterating over
index slices of one tensor is faster than a DataLoader and exactly reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from quantlens.data.source import ImageSource
from quantlens.data.transforms import Augmentation, Preprocessing, normalize, to_model_layout


@dataclass
class PreparedData:
    """A dataset at model layout: images (N, C, H, W) uint8, labels (N,) int64, ids, preprocessing."""

    source: ImageSource
    images: torch.Tensor
    labels: torch.Tensor
    preprocessing: Preprocessing

    @classmethod
    def from_source(cls, source: ImageSource, preprocessing: Preprocessing) -> PreparedData:
        images = to_model_layout(source.images, preprocessing)
        return cls(source, images, torch.from_numpy(source.labels), preprocessing)

    def batches(self, indices: np.ndarray, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None,
                augmentation: Augmentation | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (x (B, C, H, W) float32 normalised, y (B,) int64, idx (B,) int64); x and y on `device`
        (the uint8 batch crosses to it, a quarter of the float32 bytes), idx on the CPU."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            x = self.images[chunk]
            if augmentation is not None and augmentation.active:
                x = augmentation(x, generator)
            x, y = x.to(device, non_blocking=True), self.labels[chunk].to(device, non_blocking=True)
            yield normalize(x, self.preprocessing.normalization), y, chunk
