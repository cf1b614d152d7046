"""Dataset loaders on real data (shared folder) and on small files written by the tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantlens.data import load_source
from quantlens.data.idx import read_idx
from quantlens.errors import DataError, UnknownNameError


def test_digits_is_the_embedded_default():
    src = load_source("digits")
    assert len(src) == 1797 and src.num_classes == 10 and src.channels == 1
    assert src.images.shape == (1797, 8, 8, 1) and src.images.dtype == np.uint8
    assert src.images.max() == 255 and src.official_splits == {}


def test_unknown_kind_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean imagefolder"):
        load_source("imagefolders:/tmp")


def test_medmnist_official_splits(shared_path):
    src = load_source(f"medmnist:{shared_path('data/pneumoniamnist/pneumoniamnist.npz')}")
    assert {k: len(v) for k, v in src.official_splits.items()} == {"train": 4708, "val": 524, "test": 624}
    assert src.class_names == ["normal", "pneumonia"] and src.images.shape[1:] == (28, 28, 1)


def _write_npz(path: Path, labels_shape_extra=(1,), images_shape=(28, 28)) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *images_shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (n, *labels_shape_extra))
    np.savez(path, **arrays)
    return path


def test_medmnist_flat_labels_and_rgb(tmp_path):
    src = load_source(f"medmnist:{_write_npz(tmp_path / 'x.npz', (), (28, 28, 3))}")
    assert src.channels == 3 and src.num_classes == 3 and len(src) == 34


def test_medmnist_multilabel_refused(tmp_path):
    with pytest.raises(DataError, match="multi-label"):
        load_source(f"medmnist:{_write_npz(tmp_path / 'chest.npz', (14,))}")


def test_medmnist_not_an_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(DataError, match="not a readable npz"):
        load_source(f"medmnist:{bad}")


def test_missing_path_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_source(f"imagefolder:{tmp_path / 'nowhere'}")


def _image(path: Path, size, mode: str, fmt: str | None = None) -> None:
    rng = np.random.default_rng(len(str(path)))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path, format=fmt)


def test_imagefolder_mixed_modes_sizes_and_extensions(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    _image(tmp_path / "cat" / "a.JPG", (40, 30), "RGB", "JPEG")
    _image(tmp_path / "cat" / "b.png", (20, 20), "L")
    _image(tmp_path / "dog" / "c.Jpeg", (25, 50), "RGB", "JPEG")
    _image(tmp_path / "dog" / "d.bmp", (16, 16), "RGBA", "PNG")  # a PNG named .bmp: Pillow sniffs content
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    src = load_source(f"imagefolder:{tmp_path}")
    assert src.class_names == ["cat", "dog"] and list(src.labels) == [0, 0, 1, 1]
    assert src.channels == 3 and src.uniform_size is None
    assert all(img.shape[2] == 3 for img in src.images)


def test_imagefolder_corrupt_file_is_skipped_and_named(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        _image(tmp_path / cls / "ok.png", (8, 8), "L")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    src = load_source(f"imagefolder:{tmp_path}")
    assert len(src) == 2 and src.channels == 1
    assert [f for f, _ in src.skipped] == ["a/broken.jpg"]


def test_imagefolder_empty_class_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _image(tmp_path / "a" / "x.png", (8, 8), "L")
    with pytest.raises(DataError, match=r"class folder .*b holds no images"):
        load_source(f"imagefolder:{tmp_path}")


def test_imagefolder_split_folders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("x", "y"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                _image(tmp_path / split / cls / f"{i}.png", (12, 12), "RGB")
    src = load_source(f"imagefolder:{tmp_path}")
    assert {k: len(v) for k, v in src.official_splits.items()} == {"train": 6, "test": 4}
    assert src.uniform_size == (12, 12)


def test_brain_mri_loads(shared_path):
    src = load_source(f"imagefolder:{shared_path('data/brain-mri')}")
    assert src.class_names == ["no", "yes"] and len(src) == 253 and src.channels == 3
    assert src.class_counts() == {"no": 98, "yes": 155}


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_gzipped_or_raw(tmp_path, gz):
    digits = load_source("digits")
    images, labels = digits.images[..., 0], digits.labels
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images[:100], gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels[:100], gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[100:150], gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[100:150], gz)
    src = load_source(f"idx:{tmp_path}")
    assert len(src) == 150 and len(src.official_splits["test"]) == 50
    np.testing.assert_array_equal(src.images[:100, ..., 0], images[:100])


def test_idx_truncated_file_refused(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    _write_idx(path, np.arange(10), gz=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="header promises 10"):
        read_idx(path)


def test_fashion_mnist_default_location():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    src = load_source("idx:")
    assert len(src) == 70000 and src.class_names[0] == "T-shirt/top"


@pytest.mark.parametrize("make, meant", [
    (lambda root: root, "imagefolder:"),
    (lambda root: (root / "t10k-images-idx3-ubyte").touch() or root, "idx:"),
    (lambda root: (root / "x.npz").touch() or root / "x.npz", "medmnist:"),
])
def test_a_bare_path_is_told_how_to_write_it(tmp_path, make, meant):
    path = make(tmp_path)
    with pytest.raises(UnknownNameError, match="unknown dataset") as caught:
        load_source(str(path))
    assert str(caught.value).endswith(f"{path} is a path: write it as {meant}{path}")
