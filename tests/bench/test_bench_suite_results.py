"""Every typed result of a benchmark session reads back from its JSON into an equal object, and
its caveats are notes (data), issued as Python warnings only when asked."""

from __future__ import annotations

import json
import warnings

import pytest
import suite_fakes as fakes

from quantlens.bench.compare import Comparison, NoisyRunWarning
from quantlens.bench.memory import CudaPeak, PeakRss
from quantlens.bench.notes import BenchmarkNote, BenchmarkWarning
from quantlens.bench.pipeline import PipelineTimings
from quantlens.bench.profile import OperatorBreakdown, OpRow, ProfileComparison
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stats import Speedup
from quantlens.bench.suite import Agreement, BackendOutcome, BatchOutcome, BenchmarkReport, CallMemory
from quantlens.bench.suite.inputs import RunPaths
from quantlens.bench.suite.results import runner_info_from_dict
from quantlens.errors import QuantlensError


def through_json(data: dict) -> dict:
    """What a reader of the file gets: strict JSON (no NaN), lists for tuples."""
    return json.loads(json.dumps(data, allow_nan=False))


REPORT = fakes.report()
BATCH = REPORT.batch(64)
PROFILE = REPORT.profiles[0]
RESULTS = {
    "Agreement": (Agreement, REPORT.backends[0].agreement),
    "CallMemory": (CallMemory, BATCH.memory["torch-fp32"]),
    "CallMemory without CUDA": (CallMemory, BATCH.memory["ort-fp32"]),
    "PeakRss": (PeakRss, BATCH.memory["torch-fp32"].peak_rss),
    "CudaPeak": (CudaPeak, BATCH.memory["torch-fp32"].cuda_peak),
    "BackendOutcome ready": (BackendOutcome, REPORT.backend("torch-fp16")),
    "BackendOutcome unavailable": (BackendOutcome, REPORT.backend("tensorrt-fp16")),
    "BatchOutcome": (BatchOutcome, BATCH),
    "BenchmarkRecord": (BenchmarkRecord, BATCH.records["ort-fp32"]),
    "Comparison": (Comparison, BATCH.comparison),
    "Speedup": (Speedup, BATCH.speedups["openvino-int8"]),
    "BenchmarkNote": (BenchmarkNote, REPORT.notes[0]),
    "PipelineTimings split": (PipelineTimings, REPORT.pipelines[0]),
    "PipelineTimings one forward": (PipelineTimings, REPORT.pipelines[1]),
    "OpRow": (OpRow, PROFILE.candidate.rows[0]),
    "OperatorBreakdown": (OperatorBreakdown, PROFILE.candidate),
    "ProfileComparison": (ProfileComparison, PROFILE),
    "BenchmarkReport": (BenchmarkReport, REPORT),
}


@pytest.mark.parametrize("kind", RESULTS)
def test_every_result_type_reads_back_from_its_json(kind):
    cls, value = RESULTS[kind]
    assert value is not None
    assert cls.from_dict(through_json(value.to_dict())) == value


def test_runner_info_reads_back():
    info = REPORT.backend("torch-fp16").info
    assert runner_info_from_dict(through_json(info.to_dict())) == info and info.fell_back


def test_a_batch_without_comparison_reads_back():
    lone = BatchOutcome(batch_size=2, records={"torch-fp32": BATCH.records["torch-fp32"]}, comparison=None,
                        baseline=None, excluded={"ort-fp32": "too slow"}, memory={}, rounds=3)
    assert BatchOutcome.from_dict(through_json(lone.to_dict())) == lone and lone.speedups == {} and not lone.notes


def test_report_saves_and_loads_from_its_run_folder(tmp_path):
    report = fakes.report(run_dir=tmp_path)
    path = report.save()
    assert path == tmp_path / "benchmark" / "benchmark.json"
    loaded = BenchmarkReport.load(path)
    assert loaded == report and loaded.run_dir == tmp_path and loaded.out_dir == tmp_path / "benchmark"
    assert BenchmarkReport.load(tmp_path / "benchmark") == report  # the folder will do
    assert loaded.relocated(tmp_path / "renamed").path("benchmark/x.json") == tmp_path / "renamed" / "benchmark/x.json"


def test_derived_values_in_the_json_are_ignored_on_reading():
    data = through_json(BATCH.to_dict())
    data["speedups"] = {"ort-fp32": {"ratio": 1000.0}}
    data["records"]["ort-fp32"]["summary"]["median"] = -1.0
    assert BatchOutcome.from_dict(data) == BATCH


@pytest.mark.parametrize(("cls", "data", "message"), [
    (BenchmarkReport, {"schema": "something else"}, "not a quantlens benchmark report"),
    (BenchmarkReport, {"schema": "quantlens.benchmark_report", "version": 1}, "version 1 is not supported"),
    (BatchOutcome, {"batch_size": 1}, "batch outcome"),
    (Comparison, {"schema": "quantlens.benchmark_comparison", "version": 1}, "missing the field"),
    (ProfileComparison, {"schema": "x"}, "not a quantlens profile comparison"),
    (BenchmarkNote, {"text": "no kind"}, "not a benchmark note"),
])
def test_wrong_json_is_refused_with_what_it_should_be(cls, data, message):
    with pytest.raises(QuantlensError, match=message):
        cls.from_dict(data)


@pytest.mark.filterwarnings("error")
def test_notes_are_data_and_become_warnings_only_when_asked():
    kinds = {note.kind for note in REPORT.notes}
    assert kinds == {"noisy"} and all(note.backend == fakes.STALLED for note in REPORT.notes)
    assert [note.batch_size for note in REPORT.notes] == [1, 8, 64]
    assert str(REPORT.notes[0]).startswith("batch 1: 'ort-fp32' is noisy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        REPORT.warn()
    assert [w.category for w in caught] == [NoisyRunWarning] * 3
    assert BenchmarkNote("load", "busy").category is BenchmarkWarning


def test_paths_and_texts_are_made_relative_to_the_run_folder(tmp_path):
    paths = RunPaths(tmp_path / "run.partial" / "benchmark", tmp_path / "run.partial")
    assert paths.folder == "benchmark"
    assert paths.relative(tmp_path / "run.partial" / "benchmark" / "work" / "m.onnx") == "benchmark/work/m.onnx"
    reason = f"export {tmp_path}/run.partial/benchmark/work/m.onnx disagrees with torch"
    assert paths.scrub(reason) == "export benchmark/work/m.onnx disagrees with torch"
    assert RunPaths(tmp_path / "benchmark", None).run_dir == tmp_path  # default: the folder above
    with pytest.raises(QuantlensError, match="not inside the run folder"):
        RunPaths(tmp_path / "a", tmp_path / "b")
