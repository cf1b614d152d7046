"""Which samples an experiment evaluates and which calibrate simulated formats.

Evaluation uses the dataset's official test split, else the held-out test split of a training
run (this one's, or the one recorded in the checkpoint's sidecar), else every sample.
Calibration samples are never evaluated: they come from a training split (less any sample that is
evaluated), or, when that leaves none (a dataset holding only its test split), are held out of the
evaluation samples (for FP32 too, so every comparison stays paired). `eval.max_samples` then
evaluates a stratified, seeded subset of what is left (`limit_samples`), so it never overlaps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from quantlens.data import Split, holdout_split
from quantlens.data.source import ImageSource
from quantlens.data.splits import check_disjoint
from quantlens.errors import ConfigError, DataError
from quantlens.experiments.setup import Setup
from quantlens.experiments.spec import ExperimentSpec


def split_settings(spec: ExperimentSpec) -> dict:
    return {"val_fraction": spec.data.val_fraction, "test_fraction": spec.data.test_fraction,
            "split_seed": spec.data.split_seed}


def holdout(spec: ExperimentSpec, source: ImageSource, root: Path, settings: dict | None = None) -> Split:
    s = settings or split_settings(spec)
    return holdout_split(source, val_fraction=s["val_fraction"], test_fraction=s["test_fraction"],
                         seed=s["split_seed"], store_dir=root)


def checkpoint_split(spec: ExperimentSpec, source: ImageSource, setup: Setup, root: Path) -> Split | None:
    """The split the checkpoint's training run used, when quantlens trained it on this very data."""
    sidecar = setup.sidecar
    if sidecar is None or sidecar.data_fingerprint != source.fingerprint():
        return None
    return holdout(spec, source, root, sidecar.split)


def eval_indices(spec: ExperimentSpec, source: ImageSource, split: Split | None,
                 trained_on: Split | None) -> tuple[str, np.ndarray, str]:
    """(split name, indices, why this split) for the final evaluation.

    split: this run's holdout split (computed when training or when eval.split names a split);
    trained_on: the checkpoint's training split (`checkpoint_split`)."""
    wanted = spec.eval.split
    if wanted != "auto":
        indices = np.arange(len(source)) if wanted == "all" else split.get(wanted, len(source))
        if len(indices) == 0:
            raise ConfigError(f"eval.split is {wanted!r}, but {source.spec} has no {wanted} samples "
                              f"({describe_parts(source, split)})")
        return wanted, indices, "eval.split"
    if "test" in source.official_splits:
        return "test", source.official_splits["test"], "the dataset's official test split"
    if spec.train.enabled:
        return "test", split.test, "the held-out test split of this run's training"
    if trained_on is not None:
        return "test", trained_on.test, "the held-out test split the checkpoint's training run used"
    return "all", np.arange(len(source)), "no test split defined: every sample"


def check_training_split(source: ImageSource, split: Split) -> None:
    """ConfigError naming train.enabled when the data has no samples to train on (e.g. only a test split)."""
    if len(split.train) == 0:
        raise ConfigError(f"train.enabled: {source.spec} has no train samples to train on "
                          f"({describe_parts(source, split)})")


def describe_parts(source: ImageSource, split: Split) -> str:
    """The splits that hold samples and where they came from, e.g. 'it holds test 10000: official test;
    the data holds no train split' -- for an error naming a split that is not there."""
    sizes = {name: len(split.get(name, len(source))) for name in ("train", "val", "test")}
    parts = [f"{name} {n}" for name, n in sizes.items() if n]
    return f"it holds {', '.join(parts) or 'no split'}: {split.origin}"


def calibration_indices(spec: ExperimentSpec, source: ImageSource, split: Split | None, trained_on: Split | None,
                        eval_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration indices, evaluation indices, where calibration came from)."""
    wanted = max(q.calibration_samples for q in spec.quantization)
    if "train" in source.official_splits:
        pool, origin = source.official_splits["train"], "the dataset's official train split"
    elif spec.train.enabled:
        pool, origin = split.train, "this run's training split"
    elif trained_on is not None:
        pool, origin = trained_on.train, "the checkpoint's training split"
    else:
        pool, origin = eval_idx[:0], None
    # Never the evaluated samples: e.g. `eval.split: train`, or a dataset holding only a train split.
    pool = np.setdiff1d(pool, eval_idx)
    if len(pool) == 0:  # e.g. a dataset holding only its test split: hold calibration out of what is evaluated
        take = min(wanted, len(eval_idx) // 2)
        labels = source.labels[eval_idx]
        present = np.bincount(labels)[np.bincount(labels) > 0]
        stratify = labels if present.min() >= 2 and take >= len(present) else None
        rest, calib = train_test_split(eval_idx, test_size=take, random_state=spec.data.split_seed, stratify=stratify)
        return calib, np.sort(rest), f"{take} samples held out of the evaluation samples (stratified, seeded)"
    calib = np.random.default_rng(spec.data.split_seed).permutation(pool)[:wanted]
    return calib, eval_idx, origin


def three_way_split(spec: ExperimentSpec, source: ImageSource,
                    eval_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(calibration, selection, confirmation) indices cut from `eval_idx` class by class in the data's
    order (`spec.selection`), and where calibration came from. DataError when a class is too small."""
    cfg = spec.selection
    take, choose = cfg.calibration_per_class, cfg.selection_per_class
    parts: tuple[list, list, list] = ([], [], [])
    pool = np.sort(eval_idx)
    labels = source.labels[pool]
    for c in np.unique(labels):
        members = pool[labels == c]  # in the data's order: file names within a class folder
        if len(members) <= take + choose:
            raise DataError(f"selection: class {source.class_names[c]!r} has {len(members)} evaluation samples; "
                            f"calibration_per_class + selection_per_class = {take + choose} leaves none to confirm")
        for part, chunk in zip(parts, (members[:take], members[take:take + choose], members[take + choose:]),
                               strict=True):
            part.append(chunk)
    calib, selection, confirmation = (np.sort(np.concatenate(p)) for p in parts)
    origin = (f"the first {take} samples of each class in the data's order (selection: the next {choose}; "
              f"the other {len(confirmation)} are the confirmation split)")
    return calib, selection, confirmation, origin


def check_held_out(split_name: str, eval_idx: np.ndarray, trained_on: Split | None,
                   calib_idx: np.ndarray | None, selection_idx: np.ndarray | None = None) -> None:
    """DataError unless the evaluated samples are disjoint from the calibration samples and, when a test
    split is evaluated, from the samples the model was trained and selected on (calibration may come
    from the training samples: they only have to stay out of the evaluation)."""
    others = {} if calib_idx is None else {"calibration samples": calib_idx}
    if selection_idx is not None:
        others["selection samples"] = selection_idx
        check_disjoint({"selection samples": selection_idx, "calibration samples": calib_idx}, "selection")
    if split_name == "test" and trained_on is not None:
        others.update({"training samples": trained_on.train, "validation samples": trained_on.val})
    for name, part in others.items():
        check_disjoint({"evaluated samples": eval_idx, name: part}, "evaluation")


def capped_settings(spec: ExperimentSpec, n_eval: int, n_calibration: int | None,
                    n_eval_pool: int | None = None) -> dict[str, dict[str, int]]:
    """Sample-count settings that ask for more samples than exist: field -> {"requested", "used"}.
    The run uses what exists; this is what it reports, so no value is lowered silently.
    n_eval: the samples evaluated; n_eval_pool: those `eval.max_samples` chose from."""
    asked: dict[str, tuple[int, int]] = {}
    if spec.eval.max_samples is not None and n_eval_pool is not None:
        asked["eval.max_samples"] = (spec.eval.max_samples, n_eval_pool)
    if spec.quantization:  # the analysis settings serve simulated formats only
        asked["analysis.layerwise_samples"] = (spec.analysis.layerwise_samples, n_eval)
        asked["analysis.compliance_samples"] = (spec.analysis.compliance_samples, n_eval)
    if spec.benchmark.enabled:
        asked["benchmark.agreement_samples"] = (spec.benchmark.agreement_samples, n_eval)
    for i, q in enumerate(spec.quantization):
        if n_calibration is not None:
            asked[f"quantization.{i}.calibration_samples"] = (q.calibration_samples, n_calibration)
    return {field: {"requested": wanted, "used": available}
            for field, (wanted, available) in asked.items() if wanted > available}


def _per_class_counts(available: np.ndarray, limit: int) -> np.ndarray:
    """How many samples each class gives to a subset of `limit` (< available.sum()) samples:
    proportional to `available` (K,) by largest remainder, and at least one per class when `limit`
    allows (K or more), else one for each of the `limit` largest classes."""
    quota = available * limit / available.sum()  # (K,) the exact proportional share, sums to limit
    least = np.zeros_like(available)
    least[np.argsort(-available, kind="stable")[:limit]] = 1  # ties: the class listed first
    take = np.maximum(np.floor(quota).astype(available.dtype), least)
    # Raising small classes to one can overshoot: take back from the classes furthest above their share.
    while take.sum() > limit:
        take[np.argmax(np.where(take > least, take - quota, -np.inf))] -= 1
    # The floors undershoot by less than K: add to the classes furthest below their share.
    while take.sum() < limit:
        take[np.argmax(np.where(take < available, quota - take, -np.inf))] += 1
    return take


def limit_samples(source: ImageSource, pool: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, dict]:
    """(indices, record): a stratified, seeded subset of `limit` samples of the evaluation `pool`
    (`eval.max_samples`), taken after calibration and selection samples were set aside, so it never
    overlaps them. Each class gives its proportional share (`_per_class_counts`); within a class, its
    samples in the data's order are shuffled by a generator seeded with (seed, class) and the first
    share taken, so a class's draw depends only on the seed and its share. The indices come back in
    the data's order. A limit of the pool's size or more keeps the whole pool (the record says so).

    record (data.json `limit`): requested, n, of, seed, stratified_by, class_counts, pool_class_counts,
    indices (the evaluated samples)."""
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    labels = source.labels[pool]
    classes, available = np.unique(labels, return_counts=True)  # classes present in the pool
    if limit >= len(pool):
        chosen = pool
    else:
        parts = []
        for c, share in zip(classes, _per_class_counts(available, limit), strict=True):
            members = pool[labels == c]  # (n_c,) in the data's order
            rng = np.random.default_rng([seed % 2**64, int(c)])  # SeedSequence takes non-negative entropy
            parts.append(rng.permutation(members)[:share])
        chosen = np.sort(np.concatenate(parts))
    record = {"requested": int(limit), "n": len(chosen), "of": len(pool), "seed": int(seed),
              "stratified_by": "class", "class_counts": source.class_counts(chosen),
              "pool_class_counts": source.class_counts(pool), "indices": [int(i) for i in chosen]}
    return chosen, record


def describe_limit(record: dict, split_name: str) -> str:
    """One line on the subset `limit_samples` took, e.g. 'a stratified 2000 of the 10000 samples of
    split `all` (eval.max_samples; seed 0; 200 per class)'."""
    shares = [n for name, n in record["class_counts"].items() if record["pool_class_counts"][name]]
    per_class = f"{shares[0]} per class" if min(shares) == max(shares) else f"{min(shares)}-{max(shares)} per class"
    where = "the confirmation split" if split_name == "confirmation" else f"split `{split_name}`"
    return (f"a stratified {record['n']} of the {record['of']} samples of {where} (eval.max_samples; seed "
            f"{record['seed']}; {per_class})")
