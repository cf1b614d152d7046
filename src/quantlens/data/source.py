"""A decoded image-classification dataset, before any model-specific transform.

Every loader (digits, MedMNIST, image folders, IDX) returns an `ImageSource`: uint8 images in
their native size and colour mode, integer labels, a stable id per sample, and the official
splits when the dataset has them. Model-specific work (channels, size, normalisation) happens
later in `transforms`, so one source serves any model.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLIT_NAMES = ("train", "val", "test")

# Normalisation used when neither the dataset nor the config gives one. RGB folders get the
# ImageNet statistics (the pretrained models in the zoo expect them); grayscale sets get 0.5/0.5,
# which maps [0, 1] to [-1, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def for_channels(self, channels: int) -> Normalization:
        """The same statistics for `channels` channels (averaged to 1, or repeated to 3)."""
        if len(self.mean) == channels:
            return self
        if channels == 1:
            return Normalization((float(np.mean(self.mean)),), (float(np.mean(self.std)),))
        if len(self.mean) == 1:
            return Normalization(self.mean * channels, self.std * channels)
        raise ValueError(f"cannot adapt {len(self.mean)}-channel statistics to {channels} channels")


GRAY_DEFAULT = Normalization((0.5,), (0.5,))
RGB_DEFAULT = Normalization(IMAGENET_MEAN, IMAGENET_STD)


def default_normalization(channels: int) -> Normalization:
    """ImageNet statistics for colour images, (0.5, 0.5) for grey ones."""
    return RGB_DEFAULT if channels == 3 else GRAY_DEFAULT


@dataclass
class ImageSource:
    """Decoded samples of one dataset.

    images: (N, H, W, C) uint8 when all samples share a size, else a list of (H_i, W_i, C) uint8.
    labels: (N,) int64 in [0, len(class_names)).
    ids: a stable identifier per sample (a relative file path, or "<split>/<index>").
    official_splits: split name -> (n_split,) int64 indices into the samples, when the dataset
        defines its own splits (MedMNIST, IDX train/t10k, train/val/test folders).
    skipped: (file, reason) for every file that could not be decoded and was left out.
    """

    name: str
    spec: str
    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]
    channels: int
    normalization: Normalization
    official_splits: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None  # folder the ids are relative to, for sources read from image files

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.images) != n or len(self.ids) != n:
            raise ValueError(f"{self.name}: {len(self.images)} images, {n} labels, {len(self.ids)} ids")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def uniform_size(self) -> tuple[int, int] | None:
        """(H, W) when every image has the same size, else None."""
        if isinstance(self.images, np.ndarray):
            return int(self.images.shape[1]), int(self.images.shape[2])
        sizes = {img.shape[:2] for img in self.images}
        return tuple(int(s) for s in sizes.pop()) if len(sizes) == 1 else None

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.ids).encode())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Hash of the sample ids and labels: identifies this dataset's content for saved splits."""
        return self._fingerprint

    def class_counts(self, indices: np.ndarray | None = None) -> dict[str, int]:
        labels = self.labels if indices is None else self.labels[indices]
        counts = np.bincount(labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=False)}
