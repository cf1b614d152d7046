"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST...), gzipped or raw.

The folder holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
and `t10k-labels-idx1-ubyte` (each optionally `.gz`); `t10k` becomes the official test split.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import GRAY_DEFAULT, ImageSource
from quantlens.errors import DataError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file: magic (0, 0, dtype, ndim), ndim big-endian int32 sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"idx: cannot read {path} ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"idx: {path} is not an IDX file (bad magic number)")
    if data[2] != _UBYTE:
        raise DataError(f"idx: {path} holds element type 0x{data[2]:02x}; only unsigned bytes are supported")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">i4"))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"idx: {path} holds {len(data) - header} bytes of data, its header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), f"{stem.replace('-idx', '.idx')}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"idx: {folder} has no {stem}[.gz]")


@DATASETS.register("idx")
def load_idx(argument: str | None) -> ImageSource:
    folder = existing_path(argument, "idx", default=DEFAULT_DIR, want_dir=True)
    images, labels, splits, ids = [], [], {}, []
    start = 0
    for split, prefix in (("train", "train"), ("test", "t10k")):
        imgs = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        labs = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
        if imgs.ndim != 3 or labs.ndim != 1 or len(imgs) != len(labs):
            raise DataError(f"idx: {folder} {prefix} images {imgs.shape} and labels {labs.shape} do not match")
        images.append(imgs[..., None])  # (N, H, W) -> (N, H, W, 1)
        labels.append(labs.astype(np.int64))
        splits[split] = np.arange(start, start + len(labs), dtype=np.int64)
        ids.extend(f"{split}/{i}" for i in range(len(labs)))
        start += len(labs)
    all_labels = np.concatenate(labels)
    num_classes = int(all_labels.max()) + 1
    fashion = "fashion" in folder.resolve().name.lower() and num_classes == len(FASHION_CLASSES)
    return ImageSource(
        name=folder.name,
        spec=f"idx:{folder}",
        images=np.concatenate(images),
        labels=all_labels,
        ids=ids,
        class_names=FASHION_CLASSES if fashion else [str(c) for c in range(num_classes)],
        channels=1,
        normalization=GRAY_DEFAULT,
        official_splits=splits,
    )
