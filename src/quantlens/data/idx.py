"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST...), gzipped or raw.

The folder holds `train-images-idx3-ubyte` + `train-labels-idx1-ubyte` and/or `t10k-images-idx3-ubyte`
+ `t10k-labels-idx1-ubyte` (each optionally `.gz`); `t10k` becomes the official test split. A folder
with only one of the two pairs (e.g. only the `t10k` files) has only that split; an images file
without its labels file (or the reverse) is refused.

An IDX file is a magic number (0, 0, dtype, ndim), ndim big-endian uint32 sizes, then the data.
Sizes are multiplied as Python ints: a corrupt header cannot overflow into a plausible size.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import GRAY_DEFAULT, ImageSource, check_split_lengths, classes_from_labels
from quantlens.errors import DataError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = (("train", "train"), ("test", "t10k"))  # (split name, file prefix)
_UBYTE = 0x08
_MAX_HEADER = 4 + 4 * 255  # ndim is one byte


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read(limit)  # gzip decompresses only as far as it must
    except (OSError, EOFError) as exc:
        raise DataError(f"idx: cannot read {path} ({exc})") from None


def parse_header(head: bytes, path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, header length in bytes) from the first bytes of an IDX file."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"idx: {path} is not an IDX file (bad magic number)")
    if head[2] != _UBYTE:
        raise DataError(f"idx: {path} holds element type 0x{head[2]:02x}; only unsigned bytes are supported")
    ndim = head[3]
    if ndim == 0:
        raise DataError(f"idx: {path} header declares 0 dimensions")
    length = 4 + 4 * ndim
    if len(head) < length:
        raise DataError(f"idx: {path} header is truncated ({len(head)} bytes; {ndim} dimensions need {length})")
    return struct.unpack(f">{ndim}I", head[4:length]), length


def _check_size(path: Path, shape: tuple[int, ...], n_data: int) -> None:
    expected = math.prod(shape)  # Python int: no overflow
    if n_data != expected:
        raise DataError(f"idx: {path} holds {n_data} bytes of data, its header promises {expected}")


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file into a uint8 array of the shape its header gives."""
    data = _read_bytes(path)
    shape, length = parse_header(data[:_MAX_HEADER], path)
    _check_size(path, shape, len(data) - length)
    return np.frombuffer(data, dtype=np.uint8, offset=length).reshape(shape)


def read_idx_shape(path: Path) -> tuple[int, ...]:
    """The shape from the header alone; raw files are also checked against their size on disk
    (a .gz file's data size is not known without decompressing it all)."""
    shape, length = parse_header(_read_bytes(path, _MAX_HEADER), path)
    if path.suffix != ".gz":
        _check_size(path, shape, path.stat().st_size - length)
    return shape


def _names(stem: str) -> tuple[str, ...]:
    """The file names a stem may take: raw or gzipped, `-idx3-` or `.idx3-` (both are published)."""
    dotted = stem.replace("-idx", ".idx")
    return stem, f"{stem}.gz", dotted, f"{dotted}.gz"


def _find(folder: Path, stem: str) -> Path | None:
    return next((folder / name for name in _names(stem) if (folder / name).is_file()), None)


def idx_folder(argument: str | None) -> Path:
    return existing_path(argument, "idx", default=DEFAULT_DIR, want_dir=True)


def find_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Split -> (images file, labels file), for the splits whose two files are present (train, test
    or both). DataError when a split has one file without the other, or when there is no split."""
    files = {}
    for split, prefix in SPLITS:
        stems = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images, labels = (_find(folder, stem) for stem in stems)
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            present, missing = (images, stems[1]) if labels is None else (labels, stems[0])
            raise DataError(f"idx: {folder} has {present.name} but no {missing}[.gz]: the {split} split needs both")
        files[split] = (images, labels)
    if not files:
        pairs = " and ".join(f"{p}-images-idx3-ubyte + {p}-labels-idx1-ubyte" for _, p in SPLITS)
        raise DataError(f"idx: {folder} holds no IDX split: looked for {pairs} (each optionally .gz, "
                        f"or with .idx3/.idx1)")
    return files


@dataclass(frozen=True)
class IdxSummary:
    image_size: tuple[int, int]  # (H, W)
    labels: dict[str, np.ndarray]  # split -> (N_split,) int64
    class_names: list[str]


def check_files(folder: Path, files: dict[str, tuple[Path, Path]], image_shapes: dict[str, tuple[int, ...]],
                labels: dict[str, np.ndarray]) -> IdxSummary:
    """The rules across the files of the splits present: (N, H, W) images and (N,) labels per split, as
    many of each, not empty, one image size, labels that cover their classes."""
    for split, (images_path, labels_path) in files.items():
        shape, n_labels = image_shapes[split], labels[split].shape
        if len(shape) != 3 or 0 in shape[1:]:
            raise DataError(f"idx: {images_path} holds data shaped {shape}, expected (N, rows, cols)")
        if len(n_labels) != 1:
            raise DataError(f"idx: {labels_path} holds data shaped {n_labels}, expected (N,)")
        check_split_lengths(shape[0], n_labels[0], split, f"idx: {images_path}, {labels_path}")
    sizes = {image_shapes[split][1:] for split in files}
    if len(sizes) != 1:
        raise DataError(f"idx: {folder} train and test images differ in size {sorted(sizes)}")
    label_files = ", ".join(p.name for _, p in files.values())
    names = classes_from_labels(np.concatenate(list(labels.values())).astype(np.int64),
                                f"idx: {folder} ({label_files})")
    if "fashion" in folder.resolve().name.lower() and len(names) == len(FASHION_CLASSES):
        names = FASHION_CLASSES
    return IdxSummary(sizes.pop(), labels, names)


@DATASETS.register("idx")
def load_idx(argument: str | None) -> ImageSource:
    folder = idx_folder(argument)
    files = find_files(folder)
    images = {split: read_idx(images_path) for split, (images_path, _) in files.items()}
    labels = {split: read_idx(labels_path) for split, (_, labels_path) in files.items()}
    summary = check_files(folder, files, {s: a.shape for s, a in images.items()}, labels)
    splits, ids, start = {}, [], 0
    for split in files:
        n = len(labels[split])
        splits[split] = np.arange(start, start + n, dtype=np.int64)
        ids.extend(f"{split}/{i}" for i in range(n))
        start += n
    return ImageSource(
        name=folder.name,
        spec=f"idx:{folder}",
        images=np.concatenate([images[s] for s in files])[..., None],  # (N, H, W) -> (N, H, W, 1)
        labels=np.concatenate([labels[s] for s in files]).astype(np.int64),
        ids=ids,
        class_names=summary.class_names,
        channels=1,
        normalization=GRAY_DEFAULT,
        official_splits=splits,
    )
