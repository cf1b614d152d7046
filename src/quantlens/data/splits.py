"""Train/val/test splits and k-fold cross-validation folds, saved as JSON and reused.

Datasets with official splits keep them (a missing val split is carved from train). Others get
a seeded stratified split. Generated splits are written under `<run root>/cv_splits/` keyed by
the dataset's fingerprint, and read back on later runs, so every run of a study sees the same
samples in the same roles, whatever library versions do to random streams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from quantlens.atomic import write_json
from quantlens.data.source import ImageSource
from quantlens.errors import DataError


@dataclass(frozen=True)
class Split:
    """Indices into an ImageSource. `origin` says where they came from; `path` where they are saved."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    origin: str
    path: Path | None = None

    def get(self, name: str, n_total: int) -> np.ndarray:
        if name == "all":
            return np.arange(n_total, dtype=np.int64)
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def summary(self) -> dict:
        return {"origin": self.origin, "file": str(self.path) if self.path else None,
                "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)}}


def _stratified(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (rest, part) with `part` ~ fraction of them, stratified when possible."""
    if fraction <= 0:
        return indices, indices[:0]
    counts = np.bincount(labels[indices])
    stratify = labels[indices] if counts[counts > 0].min() >= 2 else None
    try:
        rest, part = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise DataError(f"cannot split {len(indices)} samples with fraction {fraction}: {exc}") from None
    return np.sort(rest).astype(np.int64), np.sort(part).astype(np.int64)


def _file(store_dir: Path, source: ImageSource, kind: str) -> Path:
    return store_dir / "cv_splits" / f"{source.name}-{source.fingerprint()}-{kind}.json"


def _read(path: Path, source: ImageSource) -> dict | None:
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"saved split {path} is unreadable ({exc}); delete it to regenerate") from None
    if saved.get("fingerprint") != source.fingerprint() or saved.get("n_samples") != len(source):
        raise DataError(f"saved split {path} does not match dataset {source.spec}; delete it to regenerate")
    return saved


def holdout_split(source: ImageSource, *, val_fraction: float, test_fraction: float, seed: int,
                  store_dir: Path | None) -> Split:
    """Official splits where the dataset has them, else a seeded stratified split (saved and reused)."""
    official = source.official_splits
    if "train" in official and "test" in official and "val" in official:
        return Split(official["train"], official["val"], official["test"], "official")
    kind = (f"holdout-train-val{val_fraction:g}-seed{seed}" if "train" in official and "test" in official
            else f"holdout-val{val_fraction:g}-test{test_fraction:g}-seed{seed}")
    path = _file(store_dir, source, kind) if store_dir is not None else None
    saved = _read(path, source) if path is not None else None
    if saved is not None:
        return Split(*(np.asarray(saved[s], dtype=np.int64) for s in ("train", "val", "test")),
                     origin=saved["origin"], path=path)
    if "train" in official and "test" in official:  # e.g. IDX: official test, val carved from train
        train, val = _stratified(official["train"], source.labels, val_fraction, seed)
        test, origin = official["test"], "official test, val carved from train"
    else:
        everything = np.arange(len(source), dtype=np.int64)
        rest, test = _stratified(everything, source.labels, test_fraction, seed)
        train, val = _stratified(rest, source.labels, val_fraction / max(1e-12, 1 - test_fraction), seed + 1)
        origin = "generated stratified split"
    split = Split(train, val, test, origin, path)
    if path is not None:
        write_json(path, {"dataset": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
                          "kind": kind, "origin": origin, "seed": seed,
                          "train": train, "val": val, "test": test})
    return split


def kfold_splits(source: ImageSource, pool: np.ndarray, *, folds: int, seed: int,
                 store_dir: Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, val) index pairs over `pool` (the non-test samples), stratified, saved and reused."""
    if folds < 2:
        raise DataError(f"k-fold cross-validation needs at least 2 folds, got {folds}")
    path = _file(store_dir, source, f"kfold{folds}-seed{seed}") if store_dir is not None else None
    saved = _read(path, source) if path is not None else None
    if saved is not None:
        return [(np.asarray(f["train"], dtype=np.int64), np.asarray(f["val"], dtype=np.int64)) for f in saved["folds"]]
    labels = source.labels[pool]
    counts = np.bincount(labels)
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts[counts > 0].min() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    if len(pool) < folds:
        raise DataError(f"{len(pool)} samples cannot make {folds} folds")
    result = [(np.sort(pool[tr]), np.sort(pool[va])) for tr, va in splitter.split(pool, labels)]
    if path is not None:
        write_json(path, {"dataset": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
                          "kind": f"kfold{folds}", "seed": seed, "stratified": isinstance(splitter, StratifiedKFold),
                          "folds": [{"train": tr, "val": va} for tr, va in result]})
    return result
