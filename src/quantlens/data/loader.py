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
    """A dataset at model layout: images (M, C, H, W) uint8 for the M samples a run reads (all N, or the
    ones `from_source` was given), labels (N,) int64, preprocessing; `rows` (N,) maps a sample's index in
    the source to its row in `images` (-1: not prepared). Every method takes source indices."""

    source: ImageSource
    images: torch.Tensor
    labels: torch.Tensor
    preprocessing: Preprocessing
    rows: torch.Tensor | None = None  # None: images holds every sample, in order

    @classmethod
    def from_source(cls, source: ImageSource, preprocessing: Preprocessing,
                    indices: np.ndarray | None = None) -> PreparedData:
        """Every sample at model layout, or only `indices` (e.g. a --limit subset and its calibration
        samples): the rest are never resized, nor held at model size."""
        labels = torch.from_numpy(source.labels)
        if indices is None:
            return cls(source, to_model_layout(source.images, preprocessing), labels, preprocessing)
        keep = np.unique(np.asarray(indices, dtype=np.int64))
        # an array or LazyImages takes the indices (the latter stays lazy: each file is decoded once, as read)
        images = [source.images[i] for i in keep] if isinstance(source.images, list) else source.images[keep]
        rows = torch.full((len(source),), -1, dtype=torch.int64)
        rows[torch.from_numpy(keep)] = torch.arange(len(keep))
        return cls(source, to_model_layout(images, preprocessing), labels, preprocessing, rows)

    def _rows(self, chunk: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return chunk
        rows = self.rows[chunk]
        if (rows < 0).any():  # a caller reading a sample the run did not ask to prepare: a bug, said plainly
            missing = chunk[rows < 0][:5].tolist()
            raise ValueError(f"samples {missing} were not prepared (PreparedData.from_source got other indices)")
        return rows

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
            x = self.images[self._rows(chunk)]
            if augmentation is not None and augmentation.active:
                x = augmentation(x, generator)
            x, y = x.to(device, non_blocking=True), self.labels[chunk].to(device, non_blocking=True)
            yield normalize(x, self.preprocessing.normalization), y, chunk
