"""A decoded image-classification dataset, before any model-specific transform.

Every loader (digits, MedMNIST, image folders, IDX) returns an `ImageSource`: uint8 images in
their native size and colour mode, integer labels, a stable id per sample, and the official
splits when the dataset has them. Model-specific work (channels, size, normalisation) happens
later in `transforms`, so one source serves any model.

The rules every dataset must meet (at least two classes, no empty split, one label per image,
labels that are class indices) are written once here, as functions of counts and label arrays, so
the loaders and the header-only `check` apply the same ones; `validate_source` applies them to
whatever a loader built. `where` in them is the message prefix naming the file or folder.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantlens.errors import DataError

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

    images: (N, H, W, C) uint8 when all samples share a size, else a sequence of (H_i, W_i, C) uint8 (a
        list, or `LazyImages` decoding a large folder's files as they are read).
    labels: (N,) int64 in [0, len(class_names)).
    ids: a stable identifier per sample (a relative file path, or "<split>/<index>").
    official_splits: split name -> (n_split,) int64 indices into the samples, when the dataset
        defines its own splits (MedMNIST, IDX train/t10k, train/val/test folders).
    skipped: (file, reason) for every file that could not be decoded and was left out.
    """

    name: str
    spec: str
    images: np.ndarray | Sequence[np.ndarray]
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
        shapes = getattr(self.images, "shapes", None)  # images decoded when read know their shapes beforehand
        sizes = {shape[:2] for shape in shapes} if shapes is not None else {img.shape[:2] for img in self.images}
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


def _listing(values, limit: int = 12) -> str:
    """'0, 1, 9' -- or the first `limit` values and how many there are."""
    values = [str(v) for v in values]
    head = ", ".join(values[:limit])
    return head if len(values) <= limit else f"{head}, ... ({len(values)} values)"


def check_class_count(n_classes: int, where: str) -> None:
    if n_classes < 2:
        raise DataError(f"{where}: {n_classes} class{'' if n_classes == 1 else 'es'}; a classifier needs at least 2")


def check_split_size(n_samples: int, split: str, where: str) -> None:
    if n_samples == 0:
        raise DataError(f"{where}: the {split} split is empty (0 samples)")


def check_split_lengths(n_images: int, n_labels: int, split: str, where: str) -> None:
    """One label per image, and at least one sample, in split `split`."""
    if n_images != n_labels:
        raise DataError(f"{where}: {split} has {n_images} images but {n_labels} labels")
    check_split_size(n_images, split, where)


def integer_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64, refusing what a cast would silently change: fractions, NaN, negatives."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            raise DataError(f"{where}: labels are not whole numbers (e.g. {labels[~whole][0]}); "
                            f"class labels must be integers")
    elif labels.dtype.kind not in "biu":
        raise DataError(f"{where}: labels have dtype {labels.dtype}; class labels must be integers")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: labels include negative values (min {labels.min()}); classes are 0..K-1")
    return labels


def classes_from_labels(labels: np.ndarray, where: str, known: list[str] | None = None) -> list[str]:
    """Class names for int64 labels that index the classes directly: `known` when the dataset
    publishes them, else '0'..'K-1' with K = max + 1. Every class must be carried by a sample, so a
    stray label (a 9 among 0/1, an IDX 255) is refused rather than made into empty classes."""
    seen = np.unique(labels)  # sorted
    if len(seen) < 2:
        raise DataError(f"{where}: every label is {_listing(seen.tolist())}: a single class; "
                        f"a classifier needs at least 2")
    if known is not None and seen[-1] >= len(known):
        raise DataError(f"{where}: labels seen {_listing(seen.tolist())} go beyond the {len(known)} known "
                        f"classes ({', '.join(known)})")
    n_classes = len(known) if known is not None else int(seen[-1]) + 1
    missing = np.setdiff1d(np.arange(n_classes), seen)
    if len(missing):
        raise DataError(f"{where}: labels seen {_listing(seen.tolist())} would make {n_classes} classes, "
                        f"of which {_listing(missing.tolist())} no sample carries")
    return list(known) if known is not None else [str(c) for c in range(n_classes)]


def validate_source(source: ImageSource) -> ImageSource:
    """The rules above, applied to any loader's result (`registry.load_source` calls this)."""
    where = source.spec
    check_class_count(source.num_classes, where)
    if len(source) == 0:
        raise DataError(f"{where}: no samples")
    if source.labels.min() < 0 or source.labels.max() >= source.num_classes:
        raise DataError(f"{where}: labels outside 0..{source.num_classes - 1}")
    for split, indices in source.official_splits.items():
        check_split_size(len(indices), split, where)
        if indices.min() < 0 or indices.max() >= len(source):
            raise DataError(f"{where}: official split {split} indexes past the {len(source)} samples")
    return source
