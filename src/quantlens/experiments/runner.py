"""Run one experiment: check everything that can be refused, then, in a run folder, prepare the data
and the sample indices and run each registered stage the spec asks for (train, eval, quantization,
benchmark; see `experiments/stages`), writing each typed result as it completes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantlens import events
from quantlens.bench.suite import BenchmarkReport
from quantlens.data import PreparedData, load_source
from quantlens.errors import QuantlensError, naming_field
from quantlens.experiments.check import check_weights
from quantlens.experiments.data_summary import DataSummary
from quantlens.experiments.record import RunRecord, prepare_run_root
from quantlens.experiments.sampling import (
    calibration_indices,
    capped_settings,
    check_held_out,
    check_training_split,
    checkpoint_split,
    describe_limit,
    eval_indices,
    holdout,
    limit_samples,
    three_way_split,
)
from quantlens.experiments.setup import Setup, check_memory, prepare_model
from quantlens.experiments.simulation import plan_simulations
from quantlens.experiments.spec import ExperimentSpec
from quantlens.experiments.stages import (
    EvaluationResult,
    PeerSummary,
    RunContext,
    SimulationSummary,
    TrainingResult,
    ordered_stages,
    save_result,
)
from quantlens.experiments.training import check_folds
from quantlens.workflows.ptq import check_calibration_set


@dataclass
class RunOutcome:
    """A finished run: its folder and each stage's typed result by stage name."""

    run_dir: Path
    data: DataSummary
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluation(self) -> EvaluationResult | None:
        return self.results.get("eval")

    @property
    def training(self) -> TrainingResult | None:
        return self.results.get("train")

    @property
    def simulation(self) -> SimulationSummary | None:
        return self.results.get("quantization")

    @property
    def peers(self) -> PeerSummary | None:
        return self.results.get("peers")

    @property
    def benchmark(self) -> BenchmarkReport | None:
        return self.results.get("benchmark")


Reporter = Callable[[RunRecord, RunOutcome], None]


def _samples_read(spec: ExperimentSpec, eval_idx: np.ndarray, calib_idx: np.ndarray | None,
                  selection_idx: np.ndarray | None) -> np.ndarray | None:
    """The samples a run reads, to be prepared at model size: what it evaluates, calibrates on and selects
    on; None (every sample) when it trains, whose folds and splits read the rest."""
    if spec.train.enabled:
        return None
    parts = [eval_idx] + [part for part in (calib_idx, selection_idx) if part is not None]
    return np.unique(np.concatenate(parts))


def run_experiment(spec: ExperimentSpec, reporters: Sequence[Reporter] = ()) -> RunOutcome:
    """Run `spec`; `reporters` (tables, figures) write into the run folder before it is finalised.
    Progress and notes are reported as `quantlens.events` (install a listener to see them).

    Everything that can be refused is refused before the run folder exists (run root, weights and
    their sidecar, data, model, memory, quantization patterns), so a user mistake leaves nothing behind."""
    root = prepare_run_root(spec.output.root)
    check_weights(spec)
    torch.manual_seed(spec.seed)
    try:
        source = load_source(spec.data.source)
    except QuantlensError as exc:
        raise naming_field("data.source", exc) from None
    # The stages read an index: a class name (or the default) is resolved once, here.
    positive = spec.eval.positive_index(source.class_names, source.spec)
    binary = source.num_classes == 2
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update={"positive_class": positive})})
    setup = prepare_model(spec, source)
    if setup.random_weights(spec) and spec.eval.enabled:
        events.warn(f"{spec.model.name} has RANDOM weights (no model.weights / --weights, no training): its "
                    f"accuracy is that of an untrained network and says nothing about the model")
    if spec.quantization:
        plan_simulations(spec, setup.model)
    needs_split = spec.train.enabled or spec.eval.split in ("train", "val", "test")
    split = holdout(spec, source, root) if needs_split else None
    trained_on = checkpoint_split(spec, source, setup, root)
    if spec.train.enabled:
        check_training_split(source, split)
        check_folds(spec, split)
    split_name, indices, reason = eval_indices(spec, source, split, trained_on)
    calib_idx, calib_origin, selection_idx = None, None, None
    if spec.quantization and spec.selection.enabled:
        calib_idx, selection_idx, indices, calib_origin = three_way_split(spec, source, indices)
    elif spec.quantization:
        calib_idx, indices, calib_origin = calibration_indices(spec, source, split, trained_on, indices)
    limit = None
    if spec.eval.max_samples is not None:  # drawn from what calibration and selection left: never overlaps them
        indices, limit = limit_samples(source, indices, spec.eval.max_samples, spec.seed)
    for i, cfg in enumerate(spec.quantization):
        check_calibration_set(min(len(calib_idx), cfg.calibration_samples), cfg.calibration_batch_size,
                              f"quantization.{i}")
    prepared = _samples_read(spec, indices, calib_idx, selection_idx)
    check_memory(spec, source, setup.preprocessing, None if prepared is None else len(prepared))
    with RunRecord(root, spec.output.name or spec.name) as record:
        record.write_environment({"seed": spec.seed, "split_seed": spec.data.split_seed})
        if source.skipped:
            events.warn(f"{len(source.skipped)} file(s) of {source.spec} could not be decoded and were skipped "
                        f"(listed in {record.run_id}/data.json)")
        resolved = spec.model_copy(update={"data": spec.data.model_copy(update={
            "image_size": setup.preprocessing.size[0], "channels": setup.preprocessing.channels,
            "mean": setup.preprocessing.normalization.mean, "std": setup.preprocessing.normalization.std}),
            # the index for a binary task; left out for more classes, where giving it is an error
            "eval": spec.eval.model_copy(update={"positive_class": positive if binary else None})})
        record.write_text("config.yaml", resolved.to_yaml())
        data = PreparedData.from_source(source, setup.preprocessing, prepared)
        capped = capped_settings(spec, len(indices), None if calib_idx is None else len(calib_idx),
                                 None if limit is None else limit["of"])
        for field_name, counts in capped.items():
            events.warn(f"{field_name} asks for {counts['requested']} samples; {counts['used']} exist and are used "
                        f"(data.json: capped)")
        check_held_out(split_name, indices, split if spec.train.enabled else trained_on, calib_idx, selection_idx)
        if selection_idx is not None:  # what is evaluated is the confirmation part of that split
            split_name, reason = "confirmation", f"{calib_origin}, cut from {split_name} ({reason})"
        if limit is not None and limit["n"] < limit["of"]:  # else it was capped (warned above): every sample
            subset = describe_limit(limit, split_name)
            reason = f"{reason}; {subset}"
            events.note(f"evaluating {subset}; data.json: limit")
        summary = DataSummary(
            spec=source.spec, fingerprint=source.fingerprint(), n_samples=len(source), class_names=source.class_names,
            native_channels=source.channels,
            native_size=None if source.uniform_size is None else list(source.uniform_size),
            class_counts=source.class_counts(),
            split=split.summary() if split else None,
            eval_split={"name": split_name, "n": len(indices), "reason": reason,
                        "class_counts": source.class_counts(indices)},
            calibration=None if calib_idx is None else {"n": len(calib_idx), "origin": calib_origin,
                                                        "indices": [int(i) for i in calib_idx]},
            selection=None if selection_idx is None else {"n": len(selection_idx), "metric": spec.selection.metric,
                                                          "indices": [int(i) for i in selection_idx]},
            capped=capped, skipped_files=[{"file": f, "reason": r} for f, r in source.skipped], limit=limit,
            positive_class={"index": positive, "name": source.class_names[positive]} if binary else None)
        record.write_json(DataSummary.FILE, summary.to_dict())
        weights = Setup.weights_origin(spec)
        ctx = RunContext(spec=spec, source=source, data=data, setup=setup, root=root, record=record, split=split,
                         trained_on=trained_on, eval_split=split_name, eval_reason=reason, eval_idx=indices,
                         calib_idx=calib_idx, selection_idx=selection_idx,
                         model_info={**setup.describe(), "weights": weights})
        for stage in ordered_stages():
            if stage.enabled(spec):
                result = stage.run(ctx)
                save_result(stage, record, result)
                ctx.results[stage.name] = result
        outcome = RunOutcome(record.dir, summary, ctx.results)
        for reporter in reporters:
            reporter(record, outcome)
        record.note(data=source.spec, model=spec.model.name, eval_split=split_name, n_skipped_files=len(source.skipped),
                    stages=list(ctx.results))
    outcome.run_dir = record.dir
    if outcome.benchmark is not None:  # its paths were resolved in the .partial folder
        outcome.results["benchmark"] = outcome.benchmark.relocated(record.dir)
    return outcome
