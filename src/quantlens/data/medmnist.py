"""MedMNIST v2 npz files (2D sets): official train/val/test splits.

The npz holds `{split}_images` shaped (N, H, W) or (N, H, W, 3) and `{split}_labels` shaped (N, 1)
or (N,). Multi-label sets (ChestMNIST: (N, 14)) and 3D volumes are refused: quantlens evaluates
single-label 2D classifiers.
"""

from __future__ import annotations

import zipfile

import numpy as np

from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import SPLIT_NAMES, ImageSource, default_normalization
from quantlens.errors import DataError

# Label names published with MedMNIST v2 for its binary and small sets (facts, keyed by file stem).
KNOWN_CLASS_NAMES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
}


def _labels(npz: np.lib.npyio.NpzFile, split: str, path) -> np.ndarray:
    labels = np.asarray(npz[f"{split}_labels"])
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"medmnist: {path} has multi-label targets shaped {labels.shape} "
                        f"(e.g. ChestMNIST); only single-label classification is supported")
    return labels.astype(np.int64)


def _images(npz: np.lib.npyio.NpzFile, split: str, path) -> np.ndarray:
    images = np.asarray(npz[f"{split}_images"])
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"medmnist: {path} {split}_images shaped {images.shape} is not a 2D image set "
                        f"(3D MedMNIST volumes are not supported)")
    if images.dtype != np.uint8:
        raise DataError(f"medmnist: {path} {split}_images has dtype {images.dtype}, expected uint8")
    return images


@DATASETS.register("medmnist")
def load_medmnist(argument: str | None) -> ImageSource:
    path = existing_path(argument, "medmnist", want_dir=False)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"medmnist: {path} is not a readable npz file ({exc})") from None
    with npz:
        missing = [f"{s}_{k}" for s in SPLIT_NAMES for k in ("images", "labels") if f"{s}_{k}" not in npz.files]
        if missing:
            raise DataError(f"medmnist: {path} lacks {', '.join(missing)} (has {', '.join(npz.files)})")
        parts = [(s, _images(npz, s, path), _labels(npz, s, path)) for s in SPLIT_NAMES]
    shapes = {imgs.shape[1:] for _, imgs, _ in parts}
    if len(shapes) != 1:
        raise DataError(f"medmnist: {path} splits have different image shapes {sorted(shapes)}")
    images = np.concatenate([imgs for _, imgs, _ in parts])
    labels = np.concatenate([lab for _, _, lab in parts])
    splits, ids, start = {}, [], 0
    for split, imgs, _ in parts:
        splits[split] = np.arange(start, start + len(imgs), dtype=np.int64)
        ids.extend(f"{split}/{i}" for i in range(len(imgs)))
        start += len(imgs)
    if labels.min() < 0:
        raise DataError(f"medmnist: {path} has negative labels")
    num_classes = int(labels.max()) + 1
    stem = path.stem.split("_")[0].lower()
    names = KNOWN_CLASS_NAMES.get(stem)
    if names is None or len(names) != num_classes:
        names = [str(c) for c in range(num_classes)]
    channels = int(images.shape[-1])
    return ImageSource(
        name=path.stem,
        spec=f"medmnist:{path}",
        images=images,
        labels=labels,
        ids=ids,
        class_names=names,
        channels=channels,
        normalization=default_normalization(channels),
        official_splits=splits,
    )
