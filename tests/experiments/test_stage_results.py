"""Experiments are a loop over registered stages; every file a run writes reads back into its typed result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from quantlens.experiments.data_summary import DataSummary
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict
from quantlens.experiments.stages import STAGES, Stage, load_result, ordered_stages
from quantlens.experiments.stages.train import CrossValidationResult

TINY = {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = spec_from_dict({
        "name": "stages", "data": {"source": "digits"}, "model": TINY, "output": {"root": str(root)},
        "train": {"enabled": True, "epochs": 1, "folds": 2},
        "quantization": [{"format": "int8", "calibration_samples": 32}, {"format": "mxfp4"}],
        "analysis": {"layerwise_samples": 16, "compliance_samples": 8},
        "benchmark": {"backends": ["torch-fp32"], "batch_sizes": [2], "rounds": 2, "warmup_until_steady": False,
                      "stages": False, "agreement_samples": 8}})
    return run_experiment(spec)


def test_stages_run_in_their_registered_order(full_run):
    assert [s.name for s in ordered_stages()][:5] == ["train", "eval", "quantization", "peers", "benchmark"]
    assert list(full_run.results) == ["train", "eval", "quantization", "benchmark"]


@pytest.mark.parametrize("name", ["train", "eval", "quantization", "benchmark"])
def test_every_stage_result_reads_back_from_its_file(full_run, name):
    stage = STAGES.get(name)
    assert (full_run.run_dir / stage.file).is_file()
    loaded = load_result(stage, full_run.run_dir)
    assert type(loaded) is type(full_run.results[name])
    if name == "benchmark":
        assert loaded.to_dict() == full_run.results[name].to_dict()
    else:
        assert loaded == full_run.results[name]
        assert json.loads(json.dumps(loaded.to_dict())) == loaded.to_dict()


def test_the_data_summary_and_the_cross_validation_read_back(full_run):
    data = DataSummary.from_dict(json.loads((full_run.run_dir / DataSummary.FILE).read_text()))
    assert data == full_run.data and data.calibration["n"] > 0 and data.eval_split["name"] == "test"
    cv = CrossValidationResult.from_dict(json.loads((full_run.run_dir / CrossValidationResult.FILE).read_text()))
    assert cv == full_run.training.cross_validation and cv.folds == 2


def test_typed_results_are_what_the_report_reads(full_run):
    evaluation, simulation = full_run.evaluation, full_run.simulation
    assert 0 <= evaluation.metrics.top1 <= 1 and evaluation.split == "test"
    assert [row.label for row in simulation.formats] == ["w:int8/channel in:int8/tensor",
                                                         "w:mxfp4/block32 in:mxfp4/block32"]
    assert simulation.formats[0].delta("top1")["interval_method"]
    assert full_run.training.epochs_run == 1 and full_run.benchmark.backends[0].name == "torch-fp32"


@dataclass(frozen=True)
class _Count:
    FILE: ClassVar[str] = "extra/count.json"
    evaluated: int

    def to_dict(self) -> dict:
        return {"evaluated": self.evaluated}

    @classmethod
    def from_dict(cls, data: dict) -> _Count:
        return cls(data["evaluated"])


def test_a_new_stage_is_one_registration(tmp_path):
    stage = Stage("count", order=25, result_type=_Count, file=_Count.FILE, enabled=lambda spec: True,
                  run=lambda ctx: _Count(len(ctx.eval_idx)))
    STAGES.add("count", stage)
    try:
        outcome = run_experiment(spec_from_dict({"model": TINY, "output": {"root": str(tmp_path)}}))
    finally:
        STAGES._items.pop("count")
    assert list(outcome.results) == ["eval", "count"]
    assert load_result(stage, outcome.run_dir) == _Count(1797) == outcome.results["count"]


def test_run_status_reads_back(full_run):
    from quantlens.experiments.record import RunStatus

    raw = json.loads((full_run.run_dir / RunStatus.FILE).read_text())
    status = RunStatus.from_dict(raw)
    assert status.status == "complete" and status.error is None and status.info["stages"] == list(full_run.results)
    assert status.to_dict() == raw


def test_each_format_folder_reads_back_into_its_row(full_run):
    from quantlens.experiments.simulation import SimulationResult

    for row in full_run.simulation.formats:
        loaded = SimulationResult.load(full_run.run_dir / "quantization" / row.folder)
        assert loaded.label == row.label and json.loads(json.dumps(loaded.row())) == row.to_dict()


def test_the_remaining_run_files_read_back_into_their_types(full_run):
    from quantlens.environment import Environment
    from quantlens.experiments.stages.train import TrainingHistory
    from quantlens.metrics.layerwise import layerwise_from_record, layerwise_record
    from quantlens.nn.compliance import ComplianceReport
    from quantlens.recipes import QuantizationConfig

    run = full_run.run_dir
    raw = json.loads((run / Environment.FILE).read_text())
    assert Environment.from_dict(raw).to_dict() == raw
    history = json.loads((run / TrainingHistory.FILE).read_text())
    assert TrainingHistory.from_list(history).to_list() == history and len(history) == 1
    folder = run / "quantization" / full_run.simulation.formats[0].folder
    layers = json.loads((folder / "layerwise.json").read_text())
    assert layerwise_record(layerwise_from_record(layers)) == layers and layers
    compliance = json.loads((folder / "compliance.json").read_text())
    assert ComplianceReport.from_dict(compliance).to_dict() == compliance
    config = json.loads((folder / "config.json").read_text())
    assert QuantizationConfig.model_validate(config).model_dump(mode="json") == config
