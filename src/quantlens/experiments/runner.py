"""Run one experiment end to end: data -> model -> (training) -> evaluation -> run record."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from sklearn.model_selection import train_test_split

from quantlens.data import PreparedData, Split, holdout_split, kfold_splits, load_source
from quantlens.data.source import ImageSource
from quantlens.data.transforms import Augmentation
from quantlens.experiments.bench_stage import run_benchmark_stage
from quantlens.experiments.benchmarking import BenchmarkReport
from quantlens.experiments.record import RunRecord, default_run_root
from quantlens.experiments.setup import Setup, prepare_model
from quantlens.experiments.simulation import run_simulations
from quantlens.experiments.spec import ExperimentSpec
from quantlens.metrics.classification import Predictions, classification_metrics
from quantlens.models.sidecar import CheckpointSidecar
from quantlens.train import predict, train_model

CHECKPOINT = "checkpoints/best.safetensors"
# Metrics averaged over cross-validation folds.
_CV_METRICS = ("top1", "top5", "macro_f1", "auroc", "ece", "sensitivity", "specificity")


@dataclass
class RunOutcome:
    run_dir: Path
    split: str
    metrics: dict  # empty when evaluation is off
    extras: dict = field(default_factory=dict)
    benchmark: BenchmarkReport | None = None


def _split_settings(spec: ExperimentSpec) -> dict:
    return {"val_fraction": spec.data.val_fraction, "test_fraction": spec.data.test_fraction,
            "split_seed": spec.data.split_seed}


def _holdout(spec: ExperimentSpec, source: ImageSource, root: Path, settings: dict | None = None) -> Split:
    s = settings or _split_settings(spec)
    return holdout_split(source, val_fraction=s["val_fraction"], test_fraction=s["test_fraction"],
                         seed=s["split_seed"], store_dir=root)


def _eval_indices(spec: ExperimentSpec, source: ImageSource, setup: Setup, root: Path) -> tuple[str, np.ndarray, str]:
    """(split name, indices, why this split) for the final evaluation."""
    wanted = spec.eval.split
    if wanted != "auto":
        indices = np.arange(len(source)) if wanted == "all" else _holdout(spec, source, root).get(wanted, len(source))
        return wanted, indices, "eval.split"
    if "test" in source.official_splits:
        return "test", source.official_splits["test"], "the dataset's official test split"
    if spec.train.enabled:
        return "test", _holdout(spec, source, root).test, "the held-out test split of this run's training"
    sidecar = setup.sidecar
    if sidecar is not None and sidecar.data_fingerprint == source.fingerprint():
        split = _holdout(spec, source, root, sidecar.split)
        return "test", split.test, "the held-out test split the checkpoint's training run used"
    return "all", np.arange(len(source)), "no test split defined: every sample"


def _calibration_split(spec: ExperimentSpec, source: ImageSource, setup: Setup, root: Path,
                       eval_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration indices, evaluation indices, where calibration came from).

    Calibration samples are never evaluated: they come from the training split when there is one;
    otherwise a seeded stratified subset is taken out of the evaluation samples (for FP32 too, so
    every comparison stays paired)."""
    wanted = max(q.calibration_samples for q in spec.quantization)
    rng = np.random.default_rng(spec.data.split_seed)
    if "train" in source.official_splits:
        pool, origin = source.official_splits["train"], "the dataset's official train split"
    elif spec.train.enabled:
        pool, origin = _holdout(spec, source, root).train, "this run's training split"
    elif setup.sidecar is not None and setup.sidecar.data_fingerprint == source.fingerprint():
        pool, origin = _holdout(spec, source, root, setup.sidecar.split).train, "the checkpoint's training split"
    else:
        take = min(wanted, len(eval_idx) // 2)
        labels = source.labels[eval_idx]
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 and take >= len(counts[counts > 0]) else None
        rest, calib = train_test_split(eval_idx, test_size=take, random_state=spec.data.split_seed, stratify=stratify)
        return calib, np.sort(rest), f"{take} samples held out of the evaluation samples (stratified, seeded)"
    calib = rng.permutation(pool)[:wanted]
    return calib, eval_idx, origin


def _train(spec: ExperimentSpec, data: PreparedData, setup: Setup, split: Split, record: RunRecord,
           console: Console) -> dict:
    augmentation = Augmentation.from_names(spec.data.augment, data.preprocessing.size[0])
    checkpoint = record.path(CHECKPOINT)
    result = train_model(setup.model, data, split.train, split.val, spec.train, seed=spec.seed,
                         augmentation=augmentation, checkpoint=checkpoint, console=console)
    p = data.preprocessing
    CheckpointSidecar(model=spec.model.name, num_classes=data.source.num_classes, in_channels=p.channels,
                      image_size=p.size, mean=p.normalization.mean, std=p.normalization.std,
                      class_names=tuple(data.source.class_names), data_spec=data.source.spec,
                      data_fingerprint=data.source.fingerprint(), split=_split_settings(spec),
                      options=dict(spec.model.options)).save(checkpoint)
    record.write_json("history.json", result.history)
    return result.summary()


def _cross_validate(spec: ExperimentSpec, source: ImageSource, data: PreparedData, split: Split, root: Path,
                    record: RunRecord, console: Console) -> dict:
    """Train one model per fold on the non-test pool; report each fold and the mean +- std."""
    pool = np.sort(np.concatenate([split.train, split.val]))
    folds = kfold_splits(source, pool, folds=spec.train.folds, seed=spec.data.split_seed, store_dir=root)
    augmentation = Augmentation.from_names(spec.data.augment, data.preprocessing.size[0])
    per_fold = []
    for k, (train_idx, val_idx) in enumerate(folds):
        torch.manual_seed(spec.seed + k)
        setup = prepare_model(spec, source)
        result = train_model(setup.model, data, train_idx, val_idx, spec.train, seed=spec.seed + k,
                             augmentation=augmentation, checkpoint=record.path(f"folds/{k}/best.safetensors"),
                             console=console, label=f"fold {k + 1}/{len(folds)}")
        val = classification_metrics(predict(setup.model, data, val_idx, spec.eval.batch_size), source.class_names,
                                     positive_class=spec.eval.positive_class, ece_bins=spec.eval.ece_bins)
        per_fold.append({"fold": k, "n_train": len(train_idx), "n_val": len(val_idx), "train": result.summary(),
                         "val": {m: val.get(m) for m in _CV_METRICS}})
    summary = {}
    for m in _CV_METRICS:
        values = [f["val"][m] for f in per_fold if f["val"][m] is not None]
        if values:
            summary[m] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "n_folds": len(values)}
    cv = {"folds": spec.train.folds, "per_fold": per_fold, "val_mean_std": summary}
    record.write_json("cross_validation.json", cv)
    return cv


Reporter = Callable[[RunRecord, RunOutcome], None]


def run_experiment(spec: ExperimentSpec, console: Console | None = None,
                   reporters: Sequence[Reporter] = ()) -> RunOutcome:
    """Run `spec`; `reporters` (tables, figures) write into the run folder before it is finalised."""
    console = console or Console(stderr=True)
    root = default_run_root(spec.output.root)
    torch.manual_seed(spec.seed)
    with RunRecord(root, spec.output.name or spec.name) as record:
        record.write_environment({"seed": spec.seed, "split_seed": spec.data.split_seed})
        source = load_source(spec.data.source)
        if source.skipped:
            console.print(f"[yellow]warning:[/] {len(source.skipped)} file(s) of {source.spec} could not be "
                          f"decoded and were skipped (listed in {record.run_id}/data.json)")
        setup = prepare_model(spec, source)
        resolved = spec.model_copy(update={"data": spec.data.model_copy(update={
            "image_size": setup.preprocessing.size[0], "channels": setup.preprocessing.channels,
            "mean": setup.preprocessing.normalization.mean, "std": setup.preprocessing.normalization.std})})
        record.write_text("config.yaml", resolved.to_yaml())
        data = PreparedData.from_source(source, setup.preprocessing)
        needs_split = spec.train.enabled or spec.eval.split in ("train", "val")
        split = _holdout(spec, source, root) if needs_split else None
        extras: dict = {"model": setup.describe()}
        if spec.train.enabled and spec.train.folds >= 2:
            extras["cross_validation"] = _cross_validate(spec, source, data, split, root, record, console)
        if spec.train.enabled:
            extras["training"] = _train(spec, data, setup, split, record, console)
        split_name, indices, reason = _eval_indices(spec, source, setup, root)
        calib_idx, calib_origin = None, None
        if spec.quantization:
            calib_idx, indices, calib_origin = _calibration_split(spec, source, setup, root, indices)
        record.write_json("data.json", {
            "spec": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
            "class_names": source.class_names, "native_channels": source.channels,
            "native_size": source.uniform_size, "class_counts": source.class_counts(),
            "split": split.summary() if split else None,
            "eval_split": {"name": split_name, "n": len(indices), "reason": reason,
                           "class_counts": source.class_counts(indices)},
            "calibration": None if calib_idx is None else {"n": len(calib_idx), "origin": calib_origin,
                                                           "indices": calib_idx},
            "skipped_files": [{"file": f, "reason": r} for f, r in source.skipped]})
        metrics: dict = {}
        if spec.eval.enabled:
            predictions: Predictions = predict(setup.model, data, indices, spec.eval.batch_size)
            predictions.save(record.path("predictions.npz"))
            metrics = classification_metrics(predictions, source.class_names,
                                             positive_class=spec.eval.positive_class, ece_bins=spec.eval.ece_bins)
            if spec.quantization:
                results = run_simulations(spec, setup.model, data, indices, calib_idx, predictions, metrics, record,
                                          console)
                extras["quantization"] = [r.row() for r in results]
        benchmark = None
        if spec.benchmark.enabled:
            benchmark = run_benchmark_stage(spec, setup, data, indices, calib_idx, record, console)
            extras["benchmark"] = {"report": "benchmark/benchmark.json"}
        record.write_json("metrics.json", {"split": split_name if spec.eval.enabled else None, "split_reason": reason,
                                           **metrics, **extras})
        outcome = RunOutcome(record.dir, split_name, metrics, extras, benchmark)
        for reporter in reporters:
            reporter(record, outcome)
        record.note(data=source.spec, model=spec.model.name, eval_split=split_name, n_skipped_files=len(source.skipped))
    outcome.run_dir = record.dir
    return outcome
