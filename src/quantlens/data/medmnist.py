"""MedMNIST v2 npz files (2D sets): official train/val/test splits.

The npz holds `{split}_images` shaped (N, H, W) or (N, H, W, 3) and `{split}_labels` shaped (N, 1)
or (N,), for the splits it has: all three as published, or any of them (e.g. only `test_images` and
`test_labels`); a split with one of its two arrays and not the other is refused. Multi-label sets
(ChestMNIST: (N, 14)) and 3D volumes are refused: quantlens evaluates single-label 2D classifiers.

`inspect_npz` applies every rule from the array headers and the (small) label arrays, without
reading an image array; the loader runs it first, so `check` and the loader agree.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlens.archives import check_archive_sizes
from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import (
    SPLIT_NAMES,
    ImageSource,
    check_split_lengths,
    classes_from_labels,
    default_normalization,
    integer_labels,
)
from quantlens.errors import DataError

# Label names published with MedMNIST v2 for its binary and small sets (facts, keyed by file stem).
KNOWN_CLASS_NAMES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
}
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _npy_header(member) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of one .npy member, without reading its data."""
    version = np.lib.format.read_magic(member)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _fortran_order, dtype = read(member)
    return tuple(shape), dtype


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name -> (shape, dtype) for every .npy member of an npz file."""
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        headers[info.filename[:-4]] = _npy_header(member)
            return headers
    except _READ_ERRORS as exc:
        raise DataError(f"medmnist: {path} is not a readable npz file ({exc})") from None


def _sample_shape(shape: tuple[int, ...], dtype: np.dtype, split: str, path: Path) -> tuple[int, int, int]:
    """(N, H, W) or (N, H, W, C) uint8 -> (H, W, C), C in (1, 3)."""
    sample = shape[1:] + (1,) if len(shape) == 3 else shape[1:]  # (N, H, W) -> (H, W, 1)
    if len(sample) != 3 or sample[-1] not in (1, 3) or 0 in sample:
        raise DataError(f"medmnist: {path} {split}_images shaped {shape} is not a 2D image set "
                        f"(3D MedMNIST volumes are not supported)")
    if dtype != np.uint8:
        raise DataError(f"medmnist: {path} {split}_images has dtype {dtype}, expected uint8")
    return sample


def _split_labels(labels: np.ndarray, split: str, path: Path) -> np.ndarray:
    """(N,) or (N, 1) labels -> (N,) int64."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"medmnist: {path} has multi-label targets shaped {labels.shape} "
                        f"(e.g. ChestMNIST); only single-label classification is supported")
    return integer_labels(labels, f"medmnist: {path} {split}_labels")


def _open(path: Path) -> np.lib.npyio.NpzFile:
    # a small deflated npz can declare gigabytes: refuse it from the zip directory before inflating
    check_archive_sizes(path, what="medmnist:", error=DataError)
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataError(f"medmnist: {path} is not a readable npz file ({exc})") from None


def _read(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except _READ_ERRORS as exc:
        raise DataError(f"medmnist: {path} cannot read {key} ({exc})") from None


@dataclass(frozen=True)
class NpzSummary:
    sample_shape: tuple[int, int, int]  # (H, W, C)
    labels: dict[str, np.ndarray]  # split -> (N_split,) int64, for the splits present (SPLIT_NAMES order)
    class_names: list[str]


def present_splits(headers: dict, path: Path) -> list[str]:
    """The splits (in SPLIT_NAMES order) that have both their arrays; DataError when a split has one
    without the other, or when no split is there."""
    splits = []
    for split in SPLIT_NAMES:
        keys = [f"{split}_{kind}" for kind in ("images", "labels")]
        found = [key in headers for key in keys]
        if all(found):
            splits.append(split)
        elif any(found):
            raise DataError(f"medmnist: {path} has {keys[found.index(True)]} but no {keys[found.index(False)]}")
    if not splits:
        wanted = ", ".join(f"{s}_images + {s}_labels" for s in SPLIT_NAMES)
        raise DataError(f"medmnist: {path} holds no split: looked for {wanted} "
                        f"(has {', '.join(headers) or 'no arrays'})")
    return splits


def inspect_npz(path: Path) -> NpzSummary:
    """Every rule, from the headers and labels only: each split present has both keys, 2D uint8 images
    of one shape, one label per image, no empty split, integer labels that cover their classes (the
    known ones, by stem)."""
    headers = npz_headers(path)
    splits = present_splits(headers, path)
    shapes = {s: _sample_shape(*headers[f"{s}_images"], s, path) for s in splits}
    if len(set(shapes.values())) != 1:
        raise DataError(f"medmnist: {path} splits have different image shapes {sorted(set(shapes.values()))}")
    with _open(path) as npz:
        labels = {s: _split_labels(_read(npz, f"{s}_labels", path), s, path) for s in splits}
    for s in splits:
        check_split_lengths(headers[f"{s}_images"][0][0], len(labels[s]), s, f"medmnist: {path}")
    known = KNOWN_CLASS_NAMES.get(path.stem.split("_")[0].lower())
    names = classes_from_labels(np.concatenate(list(labels.values())), f"medmnist: {path}", known)
    return NpzSummary(shapes[splits[0]], labels, names)


@DATASETS.register("medmnist")
def load_medmnist(argument: str | None) -> ImageSource:
    path = existing_path(argument, "medmnist", want_dir=False)
    summary = inspect_npz(path)
    with _open(path) as npz:
        # (N, H, W[, C]) -> (N, H, W, C); shapes and dtypes were checked from the headers.
        images = np.concatenate([_read(npz, f"{s}_images", path).reshape(-1, *summary.sample_shape)
                                 for s in summary.labels])
    splits, ids, start = {}, [], 0
    for split in summary.labels:
        n = len(summary.labels[split])
        splits[split] = np.arange(start, start + n, dtype=np.int64)
        ids.extend(f"{split}/{i}" for i in range(n))
        start += n
    channels = summary.sample_shape[-1]
    return ImageSource(
        name=path.stem,
        spec=f"medmnist:{path}",
        images=images,
        labels=np.concatenate(list(summary.labels.values())),
        ids=ids,
        class_names=summary.class_names,
        channels=channels,
        normalization=default_normalization(channels),
        official_splits=splits,
    )
