"""Seeded stratified splits saved and reused; the transform chain; batching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from quantlens.data import (
    Augmentation,
    Normalization,
    PreparedData,
    Preprocessing,
    holdout_split,
    kfold_splits,
    load_source,
)
from quantlens.data.transforms import normalize, to_model_layout
from quantlens.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def test_holdout_is_stratified_disjoint_and_saved(digits, tmp_path):
    split = holdout_split(digits, val_fraction=0.15, test_fraction=0.15, seed=0, store_dir=tmp_path)
    parts = [split.train, split.val, split.test]
    assert sum(map(len, parts)) == len(digits)
    assert len(np.unique(np.concatenate(parts))) == len(digits)
    test_share = np.bincount(digits.labels[split.test], minlength=10) / np.bincount(digits.labels)
    assert np.all(np.abs(test_share - 0.15) < 0.03)
    saved = json.loads(split.path.read_text())
    assert saved["fingerprint"] == digits.fingerprint() and saved["test"] == split.test.tolist()


def test_saved_split_is_reused(digits, tmp_path):
    first = holdout_split(digits, val_fraction=0.2, test_fraction=0.2, seed=3, store_dir=tmp_path)
    saved = json.loads(first.path.read_text())
    saved["test"], saved["train"] = saved["train"][:5], saved["train"][5:] + saved["test"]
    first.path.write_text(json.dumps(saved))  # an edited file wins over regeneration
    again = holdout_split(digits, val_fraction=0.2, test_fraction=0.2, seed=3, store_dir=tmp_path)
    assert again.test.tolist() == saved["test"]


def test_saved_split_of_other_data_refused(digits, tmp_path):
    split = holdout_split(digits, val_fraction=0.2, test_fraction=0.2, seed=0, store_dir=tmp_path)
    saved = json.loads(split.path.read_text())
    saved["n_samples"] = 5
    split.path.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="was not made for"):
        holdout_split(digits, val_fraction=0.2, test_fraction=0.2, seed=0, store_dir=tmp_path)


def test_official_splits_kept(shared_path):
    src = load_source(f"medmnist:{shared_path('data/pneumoniamnist/pneumoniamnist.npz')}")
    split = holdout_split(src, val_fraction=0.1, test_fraction=0.1, seed=0, store_dir=None)
    assert split.origin == "official" and len(split.test) == 624


def test_kfold_covers_pool_once_and_is_reused(digits, tmp_path):
    pool = np.arange(0, len(digits), 2)
    folds = kfold_splits(digits, pool, folds=5, seed=0, store_dir=tmp_path)
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == pool.tolist()
    for tr, va in folds:
        assert not set(tr) & set(va)
    files = list((tmp_path / "cv_splits").glob("*kfold5*.json"))
    assert len(files) == 1
    again = kfold_splits(digits, pool, folds=5, seed=0, store_dir=tmp_path)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=False))


def test_layout_gray_to_rgb_and_resize(digits):
    prep = Preprocessing(3, (16, 16), Normalization((0.5,), (0.5,)))
    x = to_model_layout(digits.images, prep)
    assert x.shape == (1797, 3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 1]) and prep.normalization.mean == (0.5, 0.5, 0.5)


def test_rgb_to_gray_uses_luma():
    from quantlens.data.source import ImageSource

    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[..., 0] = 200
    src = ImageSource("t", "t", img, np.zeros(1), ["0"], ["a"], 3, Normalization((0.5,), (0.5,)))
    x = to_model_layout(src.images, Preprocessing(1, (2, 2), Normalization((0.5,), (0.5,))))
    assert int(x[0, 0, 0, 0]) == round(0.299 * 200)


def test_normalize_values():
    x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, Normalization((0.5,), (0.25,)))
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_augmentation_is_seeded_and_shape_preserving():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    aug = Augmentation.from_names(["flip", "crop"], 8)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmentation.from_names(["rotate"], 8)


def test_batches_cover_indices_once(digits):
    data = PreparedData.from_source(digits, Preprocessing(1, (8, 8), digits.normalization))
    idx = np.arange(100)
    seen = torch.cat([i for _, _, i in data.batches(idx, 32, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == idx.tolist()
    x, y, i = next(data.batches(idx, 7))
    assert x.shape == (7, 1, 8, 8) and x.dtype == torch.float32 and torch.equal(y, data.labels[i])
