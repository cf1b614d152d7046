"""Training inside an experiment: one model with a best checkpoint and its sidecar, or k folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from quantlens.data import PreparedData, Split, kfold_splits
from quantlens.data.source import ImageSource
from quantlens.data.splits import check_disjoint
from quantlens.data.transforms import Augmentation, ResizeRule
from quantlens.errors import ConfigError
from quantlens.experiments.record import RunRecord
from quantlens.experiments.sampling import split_settings
from quantlens.experiments.setup import Setup, prepare_model
from quantlens.experiments.spec import ExperimentSpec
from quantlens.metrics.classification import classification_metrics
from quantlens.models.sidecar import CheckpointSidecar
from quantlens.train import predict, train_model

CHECKPOINT = "checkpoints/best.safetensors"
# Metrics averaged over cross-validation folds.
CV_METRICS = ("top1", "top5", "macro_f1", "auroc", "ece", "sensitivity", "specificity")


def _resize_fields(rule: ResizeRule) -> dict:
    """The sidecar's record of `rule` ({} for the default squash, as sidecars written before it have)."""
    if rule == ResizeRule():
        return {}
    return {"mode": rule.mode, "scale": None if rule.scale is None else list(rule.scale),
            "interpolation": rule.interpolation, "antialias": rule.antialias}


def train_with_checkpoint(spec: ExperimentSpec, data: PreparedData, setup: Setup, split: Split,
                          record: RunRecord) -> dict:
    """Train `setup.model` in place (best validation epoch kept), save it with its sidecar."""
    augmentation = Augmentation.from_names(spec.data.augment, data.preprocessing.size[0])
    checkpoint = record.path(CHECKPOINT)
    result = train_model(setup.model, data, split.train, split.val, spec.train, seed=spec.seed,
                         augmentation=augmentation, checkpoint=checkpoint)
    p = data.preprocessing
    CheckpointSidecar(model=spec.model.name, num_classes=data.source.num_classes, in_channels=p.channels,
                      image_size=p.size, mean=p.normalization.mean, std=p.normalization.std,
                      class_names=tuple(data.source.class_names), data_spec=data.source.spec,
                      data_fingerprint=data.source.fingerprint(), split=split_settings(spec),
                      options=dict(spec.model.options), resize=_resize_fields(p.resize)).save(checkpoint)
    record.write_json("history.json", result.history)
    return result.summary()


def check_folds(spec: ExperimentSpec, split: Split) -> None:
    """ConfigError naming train.folds when the non-test samples cannot make that many folds."""
    pool = len(split.train) + len(split.val)
    if spec.train.folds > pool:
        raise ConfigError(f"train.folds: {spec.train.folds} folds need at least as many samples; the data leaves "
                          f"{pool} outside the test split")


def cross_validate(spec: ExperimentSpec, source: ImageSource, data: PreparedData, split: Split, root: Path,
                   record: RunRecord) -> dict:
    """Train one model per fold on the non-test pool; report each fold and the mean +- std."""
    pool = np.sort(np.concatenate([split.train, split.val]))
    folds = kfold_splits(source, pool, folds=spec.train.folds, seed=spec.data.split_seed, store_dir=root)
    for k, (train_idx, val_idx) in enumerate(folds):  # the held-out test samples never train or select a model
        check_disjoint({f"fold {k} train": train_idx, f"fold {k} val": val_idx, "test": split.test},
                       "cross-validation")
    augmentation = Augmentation.from_names(spec.data.augment, data.preprocessing.size[0])
    per_fold = []
    for k, (train_idx, val_idx) in enumerate(folds):
        torch.manual_seed(spec.seed + k)
        setup = prepare_model(spec, source)
        result = train_model(setup.model, data, train_idx, val_idx, spec.train, seed=spec.seed + k,
                             augmentation=augmentation, checkpoint=record.path(f"folds/{k}/best.safetensors"),
                             label=f"fold {k + 1}/{len(folds)}")
        val = classification_metrics(predict(setup.model, data, val_idx, spec.eval.batch_size), source.class_names,
                                     positive_class=spec.eval.positive_class, ece_bins=spec.eval.ece_bins)
        per_fold.append({"fold": k, "n_train": len(train_idx), "n_val": len(val_idx), "train": result.summary(),
                         "val": {m: val.get(m) for m in CV_METRICS}})
    summary = {}
    for m in CV_METRICS:
        values = [f["val"][m] for f in per_fold if f["val"][m] is not None]
        if values:
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            summary[m] = {"mean": float(np.mean(values)), "std": std, "n_folds": len(values)}
    cv = {"folds": spec.train.folds, "per_fold": per_fold, "val_mean_std": summary}
    record.write_json("cross_validation.json", cv)
    return cv
