"""Saved splits are keyed by everything they depend on: no evaluated sample ever trains or selects a model.

The repro of the k-fold leak: folds saved by a run with `test_fraction: 0.15` were reused by a run
with `test_fraction: 0.3`, so its folds held 273 of its own 540 test samples.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from quantlens.data import holdout_split, kfold_splits, load_source
from quantlens.data.source import GRAY_DEFAULT, ImageSource
from quantlens.errors import DataError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict


def _source(n: int = 90, classes: int = 3, seed: int = 0) -> ImageSource:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return ImageSource(name="tiny", spec="tiny", images=rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
                       labels=labels, ids=[f"s/{i}" for i in range(n)], class_names=[str(c) for c in range(classes)],
                       channels=1, normalization=GRAY_DEFAULT)


@pytest.mark.parametrize(("test_fraction", "val_fraction", "folds", "seed"),
                         list(itertools.product((0.1, 0.15, 0.3), (0.1, 0.2), (2, 3, 5), (0, 7))))
def test_no_evaluated_sample_in_any_fold_whatever_ran_before(tmp_path_factory, test_fraction, val_fraction,
                                                             folds, seed):
    """One shared store, every combination run against it in turn (the order a study would)."""
    store = tmp_path_factory.getbasetemp() / "shared-store"
    source = _source()
    for previous in (0.15, 0.3):  # what earlier runs of the study left in the store
        earlier = holdout_split(source, val_fraction=val_fraction, test_fraction=previous, seed=seed, store_dir=store)
        kfold_splits(source, np.concatenate([earlier.train, earlier.val]), folds=folds, seed=seed, store_dir=store)
    split = holdout_split(source, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, store_dir=store)
    pool = np.sort(np.concatenate([split.train, split.val]))
    result = kfold_splits(source, pool, folds=folds, seed=seed, store_dir=store)
    assert len(result) == folds
    for train, val in result:
        assert not np.intersect1d(train, split.test).size and not np.intersect1d(val, split.test).size
        assert np.array_equal(np.sort(np.concatenate([train, val])), pool)


@pytest.mark.parametrize("other", [0.3, 0.150000001, 0.1])
def test_other_fraction_gets_its_own_files(tmp_path, other):
    source = _source()
    first = holdout_split(source, val_fraction=0.15, test_fraction=0.15, seed=0, store_dir=tmp_path)
    second = holdout_split(source, val_fraction=0.15, test_fraction=other, seed=0, store_dir=tmp_path)
    assert first.path != second.path
    pools = [np.sort(np.concatenate([s.train, s.val])) for s in (first, second)]
    for pool in pools:
        kfold_splits(source, pool, folds=2, seed=0, store_dir=tmp_path)
    # folds are shared exactly when they are carved from the same samples
    same_pool = np.array_equal(*pools)
    assert len(list((tmp_path / "cv_splits").glob("*kfold2*.json"))) == (1 if same_pool else 2)


def _tamper(path, edit):
    saved = json.loads(path.read_text())
    edit(saved)
    path.write_text(json.dumps(saved))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["folds"][0]["train"].append(s["folds"][0]["val"][0]), "in both"),
    (lambda s: s["folds"].pop(), "does not hold 3 folds"),
    (lambda s: s["folds"][1].update(val=s["folds"][1]["val"][1:]), "not carved from"),
    (lambda s: s["folds"][0].update(train=[10**9]), "outside"),
    (lambda s: s.update(params={**s["params"], "seed": 99}), "was not made for"),
])
def test_tampered_fold_file_refused(tmp_path, edit, message):
    source = _source()
    pool = np.arange(0, 90, 2)
    kfold_splits(source, pool, folds=3, seed=0, store_dir=tmp_path)
    (path,) = (tmp_path / "cv_splits").glob("*kfold3*.json")
    _tamper(path, edit)
    with pytest.raises(DataError, match=message):
        kfold_splits(source, pool, folds=3, seed=0, store_dir=tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["test"].append(s["train"][0]), "in both train and test"),
    (lambda s: s.update(val="nope"), "not a list of sample indices"),
    (lambda s: s["val"].extend([-1]), "outside"),
])
def test_tampered_holdout_file_refused(tmp_path, edit, message):
    source = _source()
    split = holdout_split(source, val_fraction=0.2, test_fraction=0.2, seed=1, store_dir=tmp_path)
    _tamper(split.path, edit)
    with pytest.raises(DataError, match=message):
        holdout_split(source, val_fraction=0.2, test_fraction=0.2, seed=1, store_dir=tmp_path)


def test_issue_repro_second_run_builds_its_own_folds(tmp_path):
    """digits, test_fraction 0.15 then 0.3, two folds each: the second run's folds are carved from its own
    1,257 non-test samples and hold none of its 540 test samples."""
    runs = []
    for fraction in (0.15, 0.3):
        spec = spec_from_dict({"name": "cv", "data": {"source": "digits", "test_fraction": fraction},
                               "model": {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}},
                               "train": {"enabled": True, "epochs": 1, "folds": 2},
                               "output": {"root": str(tmp_path)}})
        runs.append(run_experiment(spec))
    digits = load_source("digits")
    second = json.loads((runs[1].run_dir / "cross_validation.json").read_text())
    assert sum(f["n_val"] for f in second["per_fold"]) == 1257
    data = json.loads((runs[1].run_dir / "data.json").read_text())
    assert data["eval_split"]["n"] == 540
    split = holdout_split(digits, val_fraction=0.15, test_fraction=0.3, seed=0, store_dir=tmp_path)
    files = sorted((tmp_path / "cv_splits").glob("*kfold2*.json"))
    assert len(files) == 2
    for file in files:
        for fold in json.loads(file.read_text())["folds"]:
            in_test = np.intersect1d(fold["train"] + fold["val"], split.test)
            n = len(fold["train"]) + len(fold["val"])
            assert n in (1257, 1527) and (n == 1527 or not in_test.size)


@pytest.mark.parametrize(("calib", "train", "message"), [
    (np.array([1, 2]), np.array([50]), "evaluated samples and calibration samples"),
    (None, np.array([3, 60]), "evaluated samples and training samples"),
    (np.array([40]), np.array([41, 0]), "evaluated samples and training samples"),
])
def test_a_run_refuses_to_evaluate_what_it_trained_or_calibrated_on(calib, train, message):
    from quantlens.data import Split
    from quantlens.experiments.sampling import check_held_out

    trained_on = Split(train=train, val=np.array([70]), test=np.arange(10), origin="test")
    with pytest.raises(DataError, match=message):
        check_held_out("test", np.arange(10), trained_on, calib)
    check_held_out("test", np.arange(10), Split(np.array([50]), np.array([70]), np.arange(10), "ok"), np.array([20]))
