"""Run one experiment end to end: data -> model -> (training) -> evaluation -> simulated formats
-> benchmark -> run record."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quantlens import events
from quantlens.bench.suite import BenchmarkReport
from quantlens.data import PreparedData, load_source
from quantlens.errors import ConfigError, QuantlensError, naming_field
from quantlens.experiments.bench_stage import run_benchmark_stage
from quantlens.experiments.check import check_weights
from quantlens.experiments.record import RunRecord, prepare_run_root
from quantlens.experiments.sampling import (
    calibration_indices,
    capped_settings,
    check_held_out,
    checkpoint_split,
    eval_indices,
    holdout,
)
from quantlens.experiments.setup import check_memory, prepare_model
from quantlens.experiments.simulation import plan_simulations, run_simulations
from quantlens.experiments.spec import ExperimentSpec
from quantlens.experiments.training import check_folds, cross_validate, train_with_checkpoint
from quantlens.metrics.classification import Predictions, classification_metrics
from quantlens.train import predict


@dataclass
class RunOutcome:
    run_dir: Path
    split: str
    metrics: dict  # empty when evaluation is off
    extras: dict = field(default_factory=dict)
    benchmark: BenchmarkReport | None = None


Reporter = Callable[[RunRecord, RunOutcome], None]


class _NotesConsole:
    """Stands in for a console where a stage still prints: each line becomes a note event."""

    def print(self, text: object = "", *_: object, **__: object) -> None:
        events.note(re.sub(r"\[/?[a-z ]*\]", "", str(text)))  # rich markup off: the listener styles notes


def run_experiment(spec: ExperimentSpec, reporters: Sequence[Reporter] = ()) -> RunOutcome:
    """Run `spec`; `reporters` (tables, figures) write into the run folder before it is finalised.
    Progress and notes are reported as `quantlens.events` (install a listener to see them).

    Everything that can be refused is refused before the run folder exists (run root, weights and
    their sidecar, data, model, memory, quantization patterns), so a user mistake leaves nothing behind."""
    console = _NotesConsole()
    root = prepare_run_root(spec.output.root)
    check_weights(spec)
    torch.manual_seed(spec.seed)
    try:
        source = load_source(spec.data.source)
    except QuantlensError as exc:
        raise naming_field("data.source", exc) from None
    if source.num_classes == 2 and spec.eval.positive_class > 1:
        raise ConfigError(f"eval.positive_class is {spec.eval.positive_class}, but {source.spec} has two classes "
                          f"(0: {source.class_names[0]}, 1: {source.class_names[1]})")
    setup = prepare_model(spec, source)
    if setup.random_weights(spec) and spec.eval.enabled:
        events.warn(f"{spec.model.name} has RANDOM weights (no model.weights / --weights, no training): its "
                    f"accuracy is that of an untrained network and says nothing about the model")
    check_memory(spec, source, setup.preprocessing)
    if spec.quantization:
        plan_simulations(spec, setup.model)
    needs_split = spec.train.enabled or spec.eval.split in ("train", "val", "test")
    split = holdout(spec, source, root) if needs_split else None
    trained_on = checkpoint_split(spec, source, setup, root)
    if spec.train.enabled:
        check_folds(spec, split)
    with RunRecord(root, spec.output.name or spec.name) as record:
        record.write_environment({"seed": spec.seed, "split_seed": spec.data.split_seed})
        if source.skipped:
            events.warn(f"{len(source.skipped)} file(s) of {source.spec} could not be decoded and were skipped "
                        f"(listed in {record.run_id}/data.json)")
        resolved = spec.model_copy(update={"data": spec.data.model_copy(update={
            "image_size": setup.preprocessing.size[0], "channels": setup.preprocessing.channels,
            "mean": setup.preprocessing.normalization.mean, "std": setup.preprocessing.normalization.std})})
        record.write_text("config.yaml", resolved.to_yaml())
        data = PreparedData.from_source(source, setup.preprocessing)
        weights = "random (untrained)" if setup.random_weights(spec) else spec.model.weights or "trained in this run"
        extras: dict = {"model": {**setup.describe(), "weights": weights}}
        if spec.train.enabled and spec.train.folds >= 2:
            extras["cross_validation"] = cross_validate(spec, source, data, split, root, record)
        if spec.train.enabled:
            extras["training"] = train_with_checkpoint(spec, data, setup, split, record)
        split_name, indices, reason = eval_indices(spec, source, split, trained_on)
        calib_idx, calib_origin = None, None
        if spec.quantization:
            calib_idx, indices, calib_origin = calibration_indices(spec, source, split, trained_on, indices)
        capped = capped_settings(spec, len(indices), None if calib_idx is None else len(calib_idx))
        for field, counts in capped.items():
            events.warn(f"{field} asks for {counts['requested']} samples; {counts['used']} exist and are used "
                        f"(data.json: capped)")
        check_held_out(split_name, indices, split if spec.train.enabled else trained_on, calib_idx)
        record.write_json("data.json", {
            "spec": source.spec, "fingerprint": source.fingerprint(), "n_samples": len(source),
            "class_names": source.class_names, "native_channels": source.channels,
            "native_size": source.uniform_size, "class_counts": source.class_counts(),
            "split": split.summary() if split else None,
            "eval_split": {"name": split_name, "n": len(indices), "reason": reason,
                           "class_counts": source.class_counts(indices)},
            "calibration": None if calib_idx is None else {"n": len(calib_idx), "origin": calib_origin,
                                                           "indices": calib_idx},
            "capped": capped,
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
    if outcome.benchmark is not None:  # its paths were resolved in the .partial folder
        outcome.benchmark = outcome.benchmark.relocated(record.dir)
    return outcome
