"""Train/val/test splits and k-fold cross-validation folds, saved as JSON and reused.

Datasets with official splits keep them (a missing val or test split is carved from train; without
a train split, the splits present are all there is). Others get a seeded stratified split. Generated
splits are written under `<run root>/cv_splits/` and read back on later runs, so every run of a study
sees the same samples in the same roles, whatever library versions do to random streams.

A saved split is keyed by everything it was computed from: the dataset's fingerprint, the exact
fractions, the seed, the stratification policy, the fold count and, for folds, the very pool of
samples they were carved from (a digest of its indices). Another `test_fraction` therefore never
reuses folds that hold its own test samples. A file is also checked when read: its parameters
must match the request, and its parts must be disjoint and inside what they were carved from.
"""

from __future__ import annotations

import hashlib
import json
import re
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


# How classes are balanced across parts; part of every key, so a change of policy never reuses old files.
STRATIFY_POLICY = "stratified-when-every-class-has-enough-samples"


def index_digest(indices: np.ndarray) -> str:
    """A short hash of a set of sample indices (order-free)."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()[:16]


def _key(source: ImageSource, params: dict) -> str:
    """A digest of the dataset and every parameter a split depends on (floats by their exact repr)."""
    canonical = json.dumps({"fingerprint": source.fingerprint(), "n_samples": len(source),
                            "stratify": STRATIFY_POLICY, **params}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _file(store_dir: Path, source: ImageSource, kind: str, params: dict) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.name)[:40] or "data"
    return store_dir / "cv_splits" / f"{stem}-{source.fingerprint()}-{kind}-{_key(source, params)}.json"


def _read(path: Path, source: ImageSource, params: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"saved split {path} is unreadable ({exc}); delete it to regenerate") from None
    if not isinstance(saved, dict) or saved.get("fingerprint") != source.fingerprint() \
            or saved.get("n_samples") != len(source) or saved.get("params") != params:
        raise DataError(f"saved split {path} was not made for {source.spec} with {params}; delete it to regenerate")
    return saved


def _indices(saved: dict, key: str, path: Path, n_total: int) -> np.ndarray:
    values = saved.get(key)
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DataError(f"saved split {path}: '{key}' is not a list of sample indices; delete it to regenerate")
    array = np.asarray(values, dtype=np.int64)
    if len(array) and (array.min() < 0 or array.max() >= n_total or len(np.unique(array)) != len(array)):
        raise DataError(f"saved split {path}: '{key}' holds repeated indices or indices outside the "
                        f"{n_total} samples; delete it to regenerate")
    return array


def check_disjoint(parts: dict[str, np.ndarray], where: str) -> None:
    """DataError when any two of the named index sets share a sample."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(parts[a], parts[b])
            if len(shared):
                raise DataError(f"{where}: {len(shared)} sample(s) are in both {a} and {b} "
                                f"(e.g. index {int(shared[0])}); a result from these parts would be invalid")


def holdout_split(source: ImageSource, *, val_fraction: float, test_fraction: float, seed: int,
                  store_dir: Path | None) -> Split:
    """The dataset's official splits where it has them, the missing ones carved from its train split
    (a seeded stratified split, saved and reused); a dataset without official splits is split whole.

    - train, val and test: kept as they are;
    - no train split (e.g. an IDX folder holding only its t10k files, an npz holding only test arrays):
      the splits present are kept and the others are empty (there is nothing to carve them from);
    - train and test: val carved from train (`val_fraction` of it);
    - train and val: test carved from train (`test_fraction` of it);
    - train only, or no official split: every sample is split by `test_fraction` and `val_fraction`."""
    official = source.official_splits
    if "train" in official and "test" in official and "val" in official:
        return Split(official["train"], official["val"], official["test"], "official")
    if official and "train" not in official:
        empty = np.zeros(0, dtype=np.int64)
        present = [name for name in ("val", "test") if name in official]
        return Split(empty, official.get("val", empty), official.get("test", empty),
                     f"official {' and '.join(present)}; the data holds no train split")
    carved = "val" if "test" in official else "test" if "val" in official else None  # from the official train
    kind = f"holdout-official-{'test' if carved == 'val' else 'val'}" if carved else "holdout"
    params = {"kind": kind, "val_fraction": None if carved == "test" else repr(float(val_fraction)), "seed": int(seed),
              "test_fraction": None if carved == "val" else repr(float(test_fraction))}
    kept = {name: official[name] for name in ("val", "test") if carved and name != carved}  # the official part
    path = _file(store_dir, source, kind, params) if store_dir is not None else None
    saved = _read(path, source, params) if path is not None else None
    if saved is not None:
        train, val, test = (_indices(saved, part, path, len(source)) for part in ("train", "val", "test"))
        check_disjoint({"train": train, "val": val, "test": test}, f"saved split {path}")
        for name, indices in kept.items():
            if not np.array_equal(np.sort({"val": val, "test": test}[name]), np.sort(indices)):
                raise DataError(f"saved split {path}: its {name} part is not the official {name} split; delete it")
        return Split(train, val, test, origin=str(saved.get("origin")), path=path)
    if carved == "val":  # e.g. IDX: official test, val carved from train
        train, val = _stratified(official["train"], source.labels, val_fraction, seed)
        test, origin = official["test"], "official test, val carved from train"
    elif carved == "test":  # e.g. train/ and val/ image folders
        train, test = _stratified(official["train"], source.labels, test_fraction, seed)
        val, origin = official["val"], "official val, test carved from train"
    else:
        everything = np.arange(len(source), dtype=np.int64)
        rest, test = _stratified(everything, source.labels, test_fraction, seed)
        train, val = _stratified(rest, source.labels, val_fraction / max(1e-12, 1 - test_fraction), seed + 1)
        origin = "generated stratified split"
    split = Split(train, val, test, origin, path)
    if path is not None:
        write_json(path, {"dataset": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
                          "params": params, "origin": origin, "train": train, "val": val, "test": test})
    return split


def kfold_splits(source: ImageSource, pool: np.ndarray, *, folds: int, seed: int,
                 store_dir: Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, val) index pairs over `pool` (the non-test samples), stratified, saved and reused.

    Every pair partitions `pool` (train and val disjoint, together exactly the pool), and the val
    parts partition it too; a saved file is reused only when it was carved from this very pool."""
    if folds < 2:
        raise DataError(f"k-fold cross-validation needs at least 2 folds, got {folds}")
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    params = {"kind": "kfold", "folds": int(folds), "seed": int(seed), "pool": index_digest(pool),
              "pool_size": len(pool)}
    path = _file(store_dir, source, f"kfold{folds}", params) if store_dir is not None else None
    saved = _read(path, source, params) if path is not None else None
    if saved is not None:
        entries = saved.get("folds")
        if not isinstance(entries, list) or len(entries) != folds or not all(isinstance(f, dict) for f in entries):
            raise DataError(f"saved split {path}: 'folds' does not hold {folds} folds; delete it to regenerate")
        result = [(_indices(f, "train", path, len(source)), _indices(f, "val", path, len(source))) for f in entries]
        _check_folds(result, pool, f"saved split {path}")
        return result
    labels = source.labels[pool]
    counts = np.bincount(labels)
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts[counts > 0].min() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    if len(pool) < folds:
        raise DataError(f"{len(pool)} samples cannot make {folds} folds")
    result = [(np.sort(pool[tr]), np.sort(pool[va])) for tr, va in splitter.split(pool, labels)]
    _check_folds(result, pool, "k-fold split")
    if path is not None:
        write_json(path, {"dataset": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
                          "params": params, "stratified": isinstance(splitter, StratifiedKFold),
                          "folds": [{"train": tr, "val": va} for tr, va in result]})
    return result


def _check_folds(result: list[tuple[np.ndarray, np.ndarray]], pool: np.ndarray, where: str) -> None:
    """Each fold's train and val are disjoint and make up exactly `pool`; the val parts cover it once."""
    for k, (train, val) in enumerate(result):
        check_disjoint({f"fold {k} train": train, f"fold {k} val": val}, where)
        if not np.array_equal(np.sort(np.concatenate([train, val])), pool):
            raise DataError(f"{where}: fold {k} is not carved from the samples it is meant for; delete it")
    vals = np.sort(np.concatenate([val for _, val in result]))
    if not np.array_equal(vals, pool):
        raise DataError(f"{where}: the validation folds do not cover each sample exactly once; delete it")
