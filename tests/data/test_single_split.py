"""IDX folders and MedMNIST npz files holding only some of their splits (e.g. only the test split):
the loaders, the header-only check, the split logic, and `quantlens eval` / `simulate` end to end.

The files are real ones written from scikit-learn's digits (and, where the shared data is beside the
project, cut from PneumoniaMNIST; Fashion-MNIST's t10k files when the system package is installed)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from quantlens.data import holdout_split, load_source
from quantlens.data.check import check_data_spec, inspect_data_spec
from quantlens.errors import ConfigError, DataError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict

FASHION = Path("/usr/share/datasets/fashion-mnist")
SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}
NO_ANALYSIS = {"layerwise_samples": 0, "compliance_samples": 0}


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def _idx_file(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic (0, 0, 0x08 = unsigned bytes, ndim), big-endian uint32 sizes, the bytes."""
    data = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _idx_folder(folder: Path, digits, prefixes=("t10k",), gz: bool = False, parts=("images", "labels")) -> Path:
    """The digits as the IDX files of the given prefixes (train, t10k): all 1797 in each."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix in prefixes:
        if "images" in parts:
            _idx_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", digits.images[..., 0])  # (N, 8, 8)
        if "labels" in parts:
            _idx_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", digits.labels)
    return folder


def _npz(path: Path, digits, **splits: slice) -> Path:
    """An npz holding `{split}_images` (N, 8, 8) and `{split}_labels` (N, 1) for each split given."""
    arrays = {}
    for split, part in splits.items():
        arrays[f"{split}_images"] = digits.images[part, ..., 0]
        arrays[f"{split}_labels"] = digits.labels[part, None]
    np.savez(path, **arrays)
    return path


def _one_line(exc: pytest.ExceptionInfo, *names: str) -> str:
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in names), message
    return message


# ---------------------------------------------------------------- IDX loader and check

@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_with_only_the_test_files_loads(tmp_path, digits, gz):
    folder = _idx_folder(tmp_path / "digits-t10k", digits, gz=gz)
    source = load_source(f"idx:{folder}")
    assert list(source.official_splits) == ["test"]
    assert np.array_equal(source.official_splits["test"], np.arange(1797))
    assert np.array_equal(source.images, digits.images) and np.array_equal(source.labels, digits.labels)
    assert source.ids[0] == "test/0" and source.class_names == [str(c) for c in range(10)]
    found = inspect_data_spec(f"idx:{folder}")
    assert found.summary.endswith("10 classes, 1797 images of 8x8 (test 1797)")
    assert found.splits == {"test": 1797} and found.class_names == source.class_names


def test_idx_folder_with_only_the_train_files_loads(tmp_path, digits):
    folder = _idx_folder(tmp_path / "digits-train", digits, prefixes=("train",))
    assert list(load_source(f"idx:{folder}").official_splits) == ["train"]
    assert check_data_spec(f"idx:{folder}").endswith("(train 1797)")


@pytest.mark.parametrize("prefix, present, missing", [
    ("t10k", "images", "t10k-labels-idx1-ubyte"),
    ("t10k", "labels", "t10k-images-idx3-ubyte"),
    ("train", "images", "train-labels-idx1-ubyte"),
])
def test_idx_file_without_its_partner_is_refused_naming_it(tmp_path, digits, prefix, present, missing):
    folder = _idx_folder(tmp_path / "half", digits, prefixes=(prefix,), parts=(present,))
    if prefix == "train":  # a complete test pair does not excuse a half train pair
        _idx_folder(folder, digits)
    for load in (load_source, check_data_spec):
        with pytest.raises(DataError) as exc:
            load(f"idx:{folder}")
        _one_line(exc, missing, str(folder))


def test_idx_folder_without_any_split_lists_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no IDX files here")
    for load in (load_source, check_data_spec):
        with pytest.raises(DataError) as exc:
            load(f"idx:{tmp_path / 'empty'}")
        _one_line(exc, "holds no IDX split", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_t10k_files_alone(tmp_path):
    folder = tmp_path / "fashion-mnist-test"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(FASHION / name)
    source = load_source(f"idx:{folder}")
    assert len(source) == 10000 and list(source.official_splits) == ["test"]
    assert source.class_names[0] == "T-shirt/top" and source.class_counts()["Bag"] == 1000


# ---------------------------------------------------------------- MedMNIST npz loader and check

@pytest.mark.parametrize("splits", [("test",), ("val", "test"), ("train",), ("train", "test")])
def test_npz_holding_some_splits_loads_them(tmp_path, digits, splits):
    parts = {"train": slice(0, 900), "val": slice(900, 1200), "test": slice(1200, None)}
    path = _npz(tmp_path / "some.npz", digits, **{s: parts[s] for s in splits})
    source = load_source(f"medmnist:{path}")
    assert list(source.official_splits) == list(splits)
    sizes = {s: len(range(1797)[parts[s]]) for s in splits}
    assert {s: len(i) for s, i in source.official_splits.items()} == sizes
    for s in splits:
        assert np.array_equal(source.labels[source.official_splits[s]], digits.labels[parts[s]])
    found = inspect_data_spec(f"medmnist:{path}")
    assert found.splits == sizes and found.class_names == source.class_names


@pytest.mark.parametrize("drop, named", [("test_labels", "test_labels"), ("test_images", "test_images"),
                                         ("val_labels", "val_labels")])
def test_npz_split_with_one_array_is_refused_naming_the_other(tmp_path, digits, drop, named):
    path = _npz(tmp_path / "half.npz", digits, val=slice(0, 300), test=slice(300, None))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != drop}
    np.savez(path, **arrays)
    for load in (load_source, check_data_spec):
        with pytest.raises(DataError) as exc:
            load(f"medmnist:{path}")
        _one_line(exc, f"but no {named}", "half.npz")


def test_npz_without_any_split_lists_what_was_looked_for(tmp_path):
    np.savez(tmp_path / "other.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.arange(4) % 2)
    for load in (load_source, check_data_spec):
        with pytest.raises(DataError) as exc:
            load(f"medmnist:{tmp_path / 'other.npz'}")
        _one_line(exc, "holds no split", "test_images + test_labels", "has images, labels")


def test_pneumoniamnist_test_arrays_alone(tmp_path, shared_path):
    with np.load(shared_path("data/pneumoniamnist/pneumoniamnist.npz")) as z:
        np.savez(tmp_path / "pneumoniamnist_test.npz", test_images=z["test_images"], test_labels=z["test_labels"])
    source = load_source(f"medmnist:{tmp_path / 'pneumoniamnist_test.npz'}")
    assert {s: len(i) for s, i in source.official_splits.items()} == {"test": 624}
    assert source.class_names == ["normal", "pneumonia"] and source.class_counts() == {"normal": 234,
                                                                                       "pneumonia": 390}


# ---------------------------------------------------------------- the splits a run sees

def test_holdout_keeps_a_lone_test_split_and_writes_nothing(tmp_path, digits):
    source = load_source(f"idx:{_idx_folder(tmp_path / 'd', digits)}")
    split = holdout_split(source, val_fraction=0.2, test_fraction=0.2, seed=0, store_dir=tmp_path / "runs")
    assert len(split.train) == 0 and len(split.val) == 0 and np.array_equal(split.test, np.arange(1797))
    assert "no train split" in split.origin and not (tmp_path / "runs").exists()


def test_holdout_carves_test_from_train_when_the_data_has_train_and_val(tmp_path, digits):
    source = load_source(f"medmnist:{_npz(tmp_path / 'tv.npz', digits, train=slice(0, 1500), val=slice(1500, None))}")
    split = holdout_split(source, val_fraction=0.1, test_fraction=0.2, seed=0, store_dir=tmp_path)
    assert np.array_equal(split.val, source.official_splits["val"])  # the official val, untouched
    assert np.array_equal(np.sort(np.concatenate([split.train, split.test])), source.official_splits["train"])
    assert len(split.test) == 300 and split.path is not None and split.path.is_file()
    again = holdout_split(source, val_fraction=0.1, test_fraction=0.2, seed=0, store_dir=tmp_path)
    assert np.array_equal(again.test, split.test) and again.origin == split.origin


def test_image_folder_with_only_a_test_folder_keeps_it(tmp_path):
    from PIL import Image

    for c, name in enumerate(("cat", "dog")):
        (tmp_path / "data" / "test" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 60 * c + i, np.uint8)).save(tmp_path / "data" / "test" / name / f"{i}.png")
    source = load_source(f"imagefolder:{tmp_path / 'data'}")
    split = holdout_split(source, val_fraction=0.2, test_fraction=0.2, seed=0, store_dir=None)
    assert list(source.official_splits) == ["test"] and np.array_equal(split.test, np.arange(6))
    assert len(split.train) == 0 and len(split.val) == 0  # before: a generated split over the six test images


def _spec(root: Path, data: str, **blocks) -> object:
    return spec_from_dict({"name": "t", "device": "cpu", "data": {"source": data}, "model": SMALL_MODEL,
                           "analysis": NO_ANALYSIS, "output": {"root": str(root)}, **blocks})


@pytest.mark.parametrize("wanted", ["train", "val"])
def test_asking_for_a_split_the_data_lacks_names_it_and_those_present(tmp_path, digits, wanted):
    data = f"idx:{_idx_folder(tmp_path / 'd', digits)}"
    with pytest.raises(ConfigError) as exc:
        run_experiment(_spec(tmp_path / "runs", data, eval={"split": wanted}))
    _one_line(exc, f"eval.split is {wanted!r}", f"no {wanted} samples", "it holds test 1797", "no train split")
    assert not list((tmp_path / "runs").glob("*"))  # refused before a run folder exists


def test_training_on_a_lone_test_split_is_refused(tmp_path, digits):
    data = f"idx:{_idx_folder(tmp_path / 'd', digits)}"
    with pytest.raises(ConfigError) as exc:
        run_experiment(_spec(tmp_path / "runs", data, train={"enabled": True, "epochs": 1}))
    _one_line(exc, "train.enabled", "no train samples", "it holds test 1797")


def test_simulate_on_a_lone_train_split_calibrates_outside_the_evaluated_samples(tmp_path, digits):
    """Every sample is evaluated (no test split); the official train split therefore cannot calibrate, so
    calibration is held out of the evaluated samples instead of overlapping them."""
    data = f"idx:{_idx_folder(tmp_path / 'd', digits, prefixes=('train',))}"
    spec = _spec(tmp_path / "runs", data, quantization=[{"format": "int8", "calibration_samples": 32}])
    summary = json.loads((run_experiment(spec).run_dir / "data.json").read_text())
    assert summary["eval_split"]["name"] == "all" and summary["eval_split"]["n"] == 1797 - 32
    assert "held out of the evaluation samples" in summary["calibration"]["origin"]


# ---------------------------------------------------------------- end to end from the command line

def _data_json(cli_result) -> dict:
    run_dir = Path(cli_result.out.strip().splitlines()[-1].removeprefix("run record: "))
    return json.loads((run_dir / "data.json").read_text())


def test_cli_eval_and_simulate_on_test_only_idx_folder(cli, tmp_path, digits):
    data = f"idx:{_idx_folder(tmp_path / 'digits-t10k', digits, gz=True)}"
    common = ("--model", "compact_cnn", "--data", data, "--split", "test", "--device", "cpu",
              "--out", str(tmp_path / "runs"))
    result = cli("eval", *common)
    assert result.code == 0, result.err
    summary = _data_json(result)
    assert summary["eval_split"]["name"] == "test" and summary["eval_split"]["n"] == 1797
    assert summary["split"]["sizes"] == {"train": 0, "val": 0, "test": 1797}
    assert summary["calibration"] is None

    result = cli("simulate", *common, "--calibration-samples", "64")
    assert result.code == 0, result.err
    summary = _data_json(result)
    calibration = set(summary["calibration"]["indices"])
    assert summary["calibration"]["n"] == 64 and summary["eval_split"]["n"] == 1797 - 64
    assert "held out of the evaluation samples" in summary["calibration"]["origin"]
    run_dir = Path(result.out.strip().splitlines()[-1].removeprefix("run record: "))
    with np.load(run_dir / "predictions.npz") as z:  # the evaluated samples, as the run saved them
        evaluated = set(z["indices"].tolist())
    assert len(evaluated) == 1797 - 64 and not evaluated & calibration
    assert evaluated | calibration == set(range(1797))


def test_cli_eval_on_test_only_npz_and_a_split_it_lacks(cli, tmp_path, digits):
    data = f"medmnist:{_npz(tmp_path / 'digits_test.npz', digits, test=slice(0, 600))}"
    common = ("--model", "compact_cnn", "--data", data, "--device", "cpu", "--out", str(tmp_path / "runs"))
    result = cli("eval", *common, "--split", "test", "--limit", "100")
    assert result.code == 0, result.err
    summary = _data_json(result)
    assert summary["eval_split"]["name"] == "test" and summary["limit"]["n"] == 100 and summary["limit"]["of"] == 600

    result = cli("eval", *common, "--split", "val")
    assert result.code == 2 and len(result.error_lines) == 1
    assert "eval.split is 'val'" in result.error_lines[0] and "it holds test 600" in result.error_lines[0]


def test_cli_simulate_on_pneumoniamnist_test_arrays_alone(cli, tmp_path, shared_path):
    with np.load(shared_path("data/pneumoniamnist/pneumoniamnist.npz")) as z:
        np.savez(tmp_path / "pneumoniamnist_test.npz", test_images=z["test_images"], test_labels=z["test_labels"])
    result = cli("simulate", "--model", "compact_cnn", "--data", f"medmnist:{tmp_path / 'pneumoniamnist_test.npz'}",
                 "--split", "test", "--calibration-samples", "64", "--device", "cpu", "--out", str(tmp_path / "runs"))
    assert result.code == 0, result.err
    summary = _data_json(result)
    assert summary["eval_split"]["n"] == 624 - 64 and summary["calibration"]["n"] == 64
    assert summary["positive_class"] == {"index": 1, "name": "pneumonia"}
    assert "positive class: pneumonia (index 1)" in result.out


def test_check_finds_a_missing_split_before_a_run_as_the_run_would(cli, tmp_path, digits):
    folder = _idx_folder(tmp_path / "t10k", digits)
    for command, options, field in (("eval", ["--split", "train"], "eval.split is 'train'"),
                                    ("eval", ["--split", "val"], "eval.split is 'val'"),
                                    ("train", [], "train.enabled:")):
        checked = cli(command, "--check", "--model", "compact_cnn", "--data", f"idx:{folder}", *options)
        assert checked.code == 2 and len(checked.error_lines) == 1, checked.err
        assert checked.error_lines[0].startswith(f"error: {field}") and "holds test 1797" in checked.error_lines[0]
    assert cli("eval", "--check", "--model", "compact_cnn", "--data", f"idx:{folder}", "--split", "test").code == 0
