"""Input that used to crash a run or silently change its results: each refused (or skipped) with one
line naming the file, by the loaders and by the header-only `check_data_spec` alike."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quantlens.data import load_source
from quantlens.data.check import check_data_spec
from quantlens.data.idx import read_idx
from quantlens.data.source import GRAY_DEFAULT, ImageSource, Normalization, validate_source
from quantlens.data.transforms import Preprocessing, to_model_layout
from quantlens.errors import DataError, UnknownNameError

# ---------------------------------------------------------------- tiny datasets, written to tmp_path


def _png(path: Path, side: int = 6, value: int = 0, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (side, side) if mode == "L" else (side, side, 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def _folder(root: Path, classes=("a", "b"), per_class: int = 2, splits=("",)) -> Path:
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(per_class):
                _png(root / split / name / f"{i}.png", value=40 * c + i)
    return root


def _npz(path: Path, labels: dict | None = None, images: dict | None = None) -> Path:
    """A MedMNIST-style file: 6/2/3 samples of 5x5, labels 0/1 unless given."""
    sizes = {"train": 6, "val": 2, "test": 3}
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = (images or {}).get(split, np.zeros((n, 5, 5), np.uint8))
        arrays[f"{split}_labels"] = (labels or {}).get(split, (np.arange(n) % 2).reshape(n, 1))
    np.savez(path, **arrays)
    return path


def _idx_file(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _idx(folder: Path, train_labels=None, test_labels=None, train_images=None, gz: bool = False) -> Path:
    """Four IDX files: 6 train and 4 test images of 4x4, labels 0/1 unless given."""
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    train_labels = np.arange(6) % 2 if train_labels is None else np.asarray(train_labels)
    test_labels = np.arange(4) % 2 if test_labels is None else np.asarray(test_labels)
    train_images = np.zeros((len(train_labels), 4, 4)) if train_images is None else train_images
    _idx_file(folder / f"train-images-idx3-ubyte{suffix}", train_images, gz)
    _idx_file(folder / f"train-labels-idx1-ubyte{suffix}", train_labels, gz)
    _idx_file(folder / f"t10k-images-idx3-ubyte{suffix}", np.zeros((len(test_labels), 4, 4)), gz)
    _idx_file(folder / f"t10k-labels-idx1-ubyte{suffix}", test_labels, gz)
    return folder


def _one_line_naming(exc: pytest.ExceptionInfo, name: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and name in message, message


# ---------------------------------------------------------------- 1. gray -> 3 channels at the same size


@pytest.mark.parametrize("shape", [(1, 4, 4), (5, 3, 7), (3, 1, 1)])
def test_gray_to_rgb_same_size_repeats_the_gray_value(shape):
    gray = np.random.default_rng(0).integers(0, 256, (*shape, 1), dtype=np.uint8)  # (N, H, W, 1)
    x = to_model_layout(gray, Preprocessing(3, shape[1:], GRAY_DEFAULT), chunk=2)
    expected = torch.from_numpy(gray).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)  # (N, 3, H, W)
    assert torch.equal(x, expected)


@pytest.mark.parametrize("sides", [[(4, 4)], [(4, 4), (4, 4), (4, 4)], [(2, 9), (2, 9)]])
def test_gray_to_rgb_same_size_list_input(sides):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 1), dtype=np.uint8) for h, w in sides]
    x = to_model_layout(images, Preprocessing(3, sides[0], GRAY_DEFAULT))
    for out, image in zip(x, images, strict=True):
        assert torch.equal(out, torch.from_numpy(image[..., 0]).expand(3, -1, -1))


def test_source_images_untouched_by_layout():
    images = np.full((2, 3, 3, 1), 7, np.uint8)
    to_model_layout(images, Preprocessing(3, (3, 3), GRAY_DEFAULT))
    to_model_layout(images, Preprocessing(1, (3, 3), GRAY_DEFAULT))
    assert (images == 7).all()


# ---------------------------------------------------------------- 2. images over Pillow's pixel limit


@pytest.mark.parametrize("sides", [(9,), (12,), (9, 12)])  # limit 64: 81 warns, 144 > 2 * 64 errors
def test_image_over_pixel_limit_is_a_counted_skip(tmp_path, monkeypatch, sides):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)
    root = _folder(tmp_path / "data")  # 6x6 images: under the limit
    for side in sides:
        _png(root / "a" / f"big{side}.png", side=side)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = load_source(f"imagefolder:{root}")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert warnings.filters == filters  # set and restored around the decoding pool
    assert len(src) == 4 and src.class_counts() == {"a": 2, "b": 2}
    assert sorted(f for f, _ in src.skipped) == sorted(f"a/big{side}.png" for side in sides)
    assert all("DecompressionBomb" in reason or "over Pillow's limit" in reason for _, reason in src.skipped)


# ---------------------------------------------------------------- 3. one class, empty split, lengths, IDX headers


def _single_class_folder(tmp: Path) -> tuple[str, str]:
    return f"imagefolder:{_folder(tmp / 'data', classes=('only',))}", "data"


def _single_class_split_folder(tmp: Path) -> tuple[str, str]:
    return f"imagefolder:{_folder(tmp / 'data', classes=('only',), splits=('train', 'test'))}", "data"


def _single_label_npz(tmp: Path) -> tuple[str, str]:
    labels = {s: np.zeros((n, 1), np.int64) for s, n in (("train", 6), ("val", 2), ("test", 3))}
    return f"medmnist:{_npz(tmp / 'one.npz', labels)}", "one.npz"


def _single_label_npz_ones(tmp: Path) -> tuple[str, str]:
    labels = {s: np.ones(n, np.int64) for s, n in (("train", 6), ("val", 2), ("test", 3))}
    return f"medmnist:{_npz(tmp / 'ones.npz', labels)}", "ones.npz"


def _single_label_idx(tmp: Path) -> tuple[str, str]:
    return f"idx:{_idx(tmp / 'mnist', np.full(6, 3), np.full(4, 3))}", "mnist"


def _empty_npz_split(tmp: Path) -> tuple[str, str]:
    empty = {"test": np.zeros((0, 5, 5), np.uint8)}
    return f"medmnist:{_npz(tmp / 'e.npz', {'test': np.zeros((0, 1))}, empty)}", "e.npz"


def _empty_idx(tmp: Path) -> tuple[str, str]:
    return f"idx:{_idx(tmp / 'mnist', test_labels=np.zeros(0))}", "t10k"


def _split_folder_without_classes(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", splits=("train", "val"))
    (root / "test").mkdir()
    return f"imagefolder:{root}", "test"


def _split_folder_with_loose_images(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", splits=("train",))
    _png(root / "test" / "loose.png")
    return f"imagefolder:{root}", "test"


def _split_class_without_images(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", splits=("train",))
    (root / "test" / "a").mkdir(parents=True)
    (root / "test" / "a" / "notes.txt").write_text("no image")
    return f"imagefolder:{root}", "test/a"


def _npz_lengths_differ(tmp: Path) -> tuple[str, str]:
    images = {"train": np.zeros((10, 5, 5), np.uint8)}
    return f"medmnist:{_npz(tmp / 'len.npz', {'train': np.arange(9) % 2}, images)}", "len.npz"


def _npz_val_lengths_differ(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'val.npz', {'val': np.array([0, 1, 0])})}", "val.npz"


def _idx_lengths_differ(tmp: Path) -> tuple[str, str]:
    return f"idx:{_idx(tmp / 'mnist', train_images=np.zeros((7, 4, 4)))}", "train-images"


def _idx_header_promises_more(tmp: Path) -> tuple[str, str]:
    folder = _idx(tmp / "mnist")
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    return f"idx:{folder}", "train-images-idx3-ubyte"


def _idx_header_truncated(tmp: Path) -> tuple[str, str]:
    folder = _idx(tmp / "mnist")
    (folder / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    return f"idx:{folder}", "t10k-images-idx3-ubyte"


def _idx_header_ndim_zero(tmp: Path) -> tuple[str, str]:
    folder = _idx(tmp / "mnist")
    (folder / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 0]) + bytes(6))
    return f"idx:{folder}", "train-labels-idx1-ubyte"


def _idx_header_overflows_int64(tmp: Path) -> tuple[str, str]:
    folder = _idx(tmp / "mnist")
    huge = np.array([2**32 - 1] * 3, dtype=">u4").tobytes()  # product ~ 8e28 > 2**63
    (folder / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + huge + bytes(16))
    return f"idx:{folder}", "train-images-idx3-ubyte"


# ---------------------------------------------------------------- 4. labels that would create classes


def _npz_stray_label(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'stray.npz', {'test': np.array([0, 1, 9])})}", "stray.npz"


def _npz_float_labels(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'float.npz', {'val': np.array([0.0, 1.5])})}", "float.npz"


def _npz_nan_labels(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'nan.npz', {'val': np.array([0.0, np.nan])})}", "nan.npz"


def _npz_negative_labels(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'neg.npz', {'test': np.array([0, 1, -1])})}", "neg.npz"


def _npz_beyond_known_classes(tmp: Path) -> tuple[str, str]:
    return f"medmnist:{_npz(tmp / 'pneumoniamnist.npz', {'test': np.array([0, 1, 2])})}", "pneumoniamnist.npz"


def _idx_label_255(tmp: Path) -> tuple[str, str]:
    return f"idx:{_idx(tmp / 'mnist', test_labels=[0, 1, 1, 255])}", "t10k-labels-idx1-ubyte"


def _idx_label_gap(tmp: Path) -> tuple[str, str]:
    return f"idx:{_idx(tmp / 'mnist', [0, 2, 0, 2, 0, 2], [0, 2, 2, 0])}", "train-labels-idx1-ubyte"


# ---------------------------------------------------------------- 5. split folders mixed with class folders


def _mixed_train_test_misc(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", splits=("train", "test"))
    _png(root / "misc" / "x.png")
    return f"imagefolder:{root}", "misc"


def _mixed_val_and_classes(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", classes=("cat", "dog"))
    _folder(root, splits=("val",))
    return f"imagefolder:{root}", "cat, dog"


def _mixed_capitalised_split(tmp: Path) -> tuple[str, str]:
    root = _folder(tmp / "data", splits=("Train",))
    _png(root / "other" / "x.png")
    return f"imagefolder:{root}", "Train"


BROKEN: dict[str, tuple[Callable[[Path], tuple[str, str]], str]] = {
    # name: (builder -> (spec, a name the message must hold), a regex the message must match)
    "single class folder": (_single_class_folder, "1 class"),
    "single class in split folders": (_single_class_split_folder, "1 class"),
    "npz labels all 0": (_single_label_npz, "single class"),
    "npz labels all 1": (_single_label_npz_ones, "single class"),
    "idx labels all 3": (_single_label_idx, "single class"),
    "npz test split empty": (_empty_npz_split, "test split is empty"),
    "idx file with 0 items": (_empty_idx, "test split is empty"),
    "split folder without class folders": (_split_folder_without_classes, "no class sub-folders"),
    "split folder with loose images": (_split_folder_with_loose_images, "no class sub-folders"),
    "split class folder without images": (_split_class_without_images, "holds no images"),
    "npz train 10 images 9 labels": (_npz_lengths_differ, "10 images but 9 labels"),
    "npz val 2 images 3 labels": (_npz_val_lengths_differ, "2 images but 3 labels"),
    "idx 7 images 6 labels": (_idx_lengths_differ, "7 images but 6 labels"),
    "idx header promises more": (_idx_header_promises_more, "header promises 96"),
    "idx header truncated": (_idx_header_truncated, "header is truncated"),
    "idx ndim 0": (_idx_header_ndim_zero, "0 dimensions"),
    "idx dims overflow int64": (_idx_header_overflows_int64, "header promises 79228162458924105385300197375"),
    "npz stray label 9": (_npz_stray_label, "labels seen 0, 1, 9 would make 10 classes"),
    "npz fractional labels": (_npz_float_labels, "not whole numbers"),
    "npz NaN labels": (_npz_nan_labels, "not whole numbers"),
    "npz negative labels": (_npz_negative_labels, "negative"),
    "npz beyond known classes": (_npz_beyond_known_classes, "beyond the 2 known classes"),
    "idx label 255": (_idx_label_255, "would make 256 classes"),
    "idx label gap": (_idx_label_gap, "would make 3 classes, of which 1 no sample carries"),
    "train test misc": (_mixed_train_test_misc, "mixes split folders"),
    "val with class folders": (_mixed_val_and_classes, "mixes split folders"),
    "Train with another folder": (_mixed_capitalised_split, "mixes split folders"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_data_refused_by_loader_and_check(tmp_path, case):
    build, pattern = BROKEN[case]
    spec, name = build(tmp_path)
    with pytest.raises(DataError, match=pattern) as loaded:
        load_source(spec)
    _one_line_naming(loaded, name)
    with pytest.raises(DataError, match=pattern) as checked:
        check_data_spec(spec)
    assert str(checked.value) == str(loaded.value)


@pytest.mark.parametrize("header, pattern", [
    (bytes([0, 0, 8]), "bad magic"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 1]), "header is truncated"),
    (bytes([0, 0, 8, 0]), "0 dimensions"),
    (bytes([0, 0, 8, 2]) + np.array([2**31, 2**31], ">u4").tobytes(), "promises 4611686018427387904"),
])
def test_read_idx_header_errors(tmp_path, header, pattern):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(header)
    with pytest.raises(DataError, match=pattern) as exc:
        read_idx(path)
    _one_line_naming(exc, "x-idx1-ubyte")


@pytest.mark.parametrize("labels, classes", [
    (np.array([0.0, 1.0, 1.0]), ["0", "1"]),  # floats accepted when every value is whole
    (np.array([[2], [0], [1]], np.uint8), ["0", "1", "2"]),
    (np.array([True, False, True]), ["0", "1"]),
])
def test_integral_labels_accepted(tmp_path, labels, classes):
    src = load_source(f"medmnist:{_npz(tmp_path / 'ok.npz', {'test': labels})}")
    assert src.class_names == classes and src.labels.dtype == np.int64


def test_known_class_names_kept(tmp_path):
    src = load_source(f"medmnist:{_npz(tmp_path / 'pneumoniamnist.npz')}")
    assert src.class_names == ["normal", "pneumonia"] and len(src) == 11


@pytest.mark.parametrize("labels, classes, splits, pattern", [
    ([0, 0, 0], ["a"], {}, "1 class"),
    ([0, 1, 2], ["a", "b", "c"], {"test": np.array([], np.int64)}, "test split is empty"),
    ([0, 1, 5], ["a", "b", "c"], {}, "labels outside 0..2"),
    ([], ["a", "b"], {}, "no samples"),
])
def test_validate_source_applies_to_any_loader(labels, classes, splits, pattern):
    n = len(labels)
    src = ImageSource("t", "custom:x", np.zeros((n, 2, 2, 1), np.uint8), np.array(labels, np.int64),
                      [str(i) for i in range(n)], classes, 1, Normalization((0.5,), (0.5,)), official_splits=splits)
    with pytest.raises(DataError, match=pattern) as exc:
        validate_source(src)
    _one_line_naming(exc, "custom:x")


# ---------------------------------------------------------------- 6. check_data_spec on valid specs


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize("build, summary", [
    (lambda t: f"imagefolder:{_folder(t / 'data', classes=('a', 'b', 'c'))}", "3 classes, 6 image files"),
    (lambda t: f"imagefolder:{_folder(t / 'data', splits=('train', 'Test'))}",
     "2 classes, 8 image files (train 4, test 4)"),
    (lambda t: f"medmnist:{_npz(t / 'm.npz')}", "2 classes, 11 images of 5x5x1 (train 6, val 2, test 3)"),
    (lambda t: f"idx:{_idx(t / 'raw')}", "2 classes, 10 images of 4x4 (train 6, test 4)"),
    (lambda t: f"idx:{_idx(t / 'gz', gz=True)}", "2 classes, 10 images of 4x4 (train 6, test 4)"),
    (lambda t: "synthetic", "1000 classes, 256 images of 224x224x3"),
    (lambda t: "synthetic:classes=7,channels=1,size=16,count=32", "7 classes, 32 images of 16x16x1"),
    (lambda t: "digits", "10 classes, 1797 images"),
], ids=["imagefolder", "imagefolder-splits", "medmnist", "idx-raw", "idx-gz", "synthetic", "synthetic-options",
        "digits"])
def test_check_valid_specs(tmp_path, build, summary):
    spec = build(tmp_path)
    before = _tree(tmp_path)
    line = check_data_spec(spec)
    assert line.endswith(summary) and "\n" not in line
    assert _tree(tmp_path) == before  # nothing written
    load_source(spec)  # and the loader agrees


def test_check_decodes_no_image(tmp_path, monkeypatch):
    import quantlens.data.decode as decode
    import quantlens.data.idx as idx

    def refuse(*args, **kwargs):
        raise AssertionError("check_data_spec decoded image data")

    monkeypatch.setattr(decode, "decode_image", refuse)
    npz_getitem = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: refuse() if key.endswith("_images") else npz_getitem(self, key))
    real_read_idx = idx.read_idx
    monkeypatch.setattr(idx, "read_idx", lambda path: refuse() if "images" in path.name else real_read_idx(path))
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir()
    for cls in ("a", "b"):  # not images at all: only the extension is checked, decoding is the loader's job
        (tmp_path / "data" / cls / "x.png").write_bytes(b"not a png")
    assert check_data_spec(f"imagefolder:{tmp_path / 'data'}").endswith("2 classes, 2 image files")
    assert "11 images" in check_data_spec(f"medmnist:{_npz(tmp_path / 'm.npz')}")
    assert "10 images" in check_data_spec(f"idx:{_idx(tmp_path / 'mnist', gz=True)}")


@pytest.mark.parametrize("spec, pattern", [
    ("synthetic:channels=2", "channels must be 1 or 3"),
    ("synthetic:classes=1", "1 class"),
    ("synthetic:colour=3", "is not one of"),
    ("imagefolders:/tmp", "did you mean imagefolder"),
    ("digits:extra", "takes no argument"),
])
def test_check_refuses_bad_specs(spec, pattern):
    with pytest.raises((DataError, UnknownNameError), match=pattern):  # an unknown kind: as the loader says
        check_data_spec(spec)


@pytest.mark.parametrize("kind, make", [
    ("imagefolder", lambda t: t / "file.txt"),  # a file where a folder is wanted
    ("medmnist", lambda t: t),  # a folder where a file is wanted
    ("idx", lambda t: t / "missing"),
    ("medmnist", lambda t: t / "bad.npz"),  # not a zip
    ("idx", lambda t: t / "empty"),  # a folder without the four files
])
def test_check_refuses_bad_paths(tmp_path, kind, make):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "bad.npz").write_text("not a zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        check_data_spec(f"{kind}:{make(tmp_path)}")
    _one_line_naming(exc, tmp_path.name)


@pytest.mark.parametrize("relative, summary", [
    ("data/cifar10-test-jpeg", "10 classes, 10000 image files"),
    ("data/brain-mri", "2 classes, 253 image files"),
    ("data/pneumoniamnist/pneumoniamnist.npz", "2 classes, 5856 images of 28x28x1 (train 4708, val 524, test 624)"),
])
def test_check_real_data(shared_path, relative, summary):
    kind = "medmnist" if relative.endswith(".npz") else "imagefolder"
    assert check_data_spec(f"{kind}:{shared_path(relative)}").endswith(summary)
