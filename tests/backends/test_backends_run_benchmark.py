"""A benchmark session end to end on a tiny model, its JSON read back, and the tables and figures
made from its report.

The session runs on the real clock, so its timings depend on the machine's load: the tests assert
structure (which records, how many samples, ordered and positive intervals, each speedup derived
from its records) and never a measured magnitude. Speedup arithmetic on known samples is tested
in tests/bench/test_bench_stats.py and test_bench_compare.py.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from quantlens.bench.compare import Comparison
from quantlens.bench.profile import ProfileComparison
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stats import speedup
from quantlens.bench.suite import BenchmarkReport, BenchmarkSession, run_benchmark
from quantlens.bench.suite import session as session_module
from quantlens.errors import QuantlensError
from quantlens.models.build import build_model
from quantlens.recipes.benchmark import BenchmarkConfig
from quantlens.report.bench_plots import write_benchmark_plots
from quantlens.report.bench_tables import benchmark_text, write_benchmark_tables

# Caveats (noisy runs ...) are notes on the report; a Python warning leaking out is a bug.
pytestmark = pytest.mark.filterwarnings("error::quantlens.bench.compare.BenchmarkWarning")

QUICK = dict(threads=1, rounds=2, samples_per_round=2, discard_per_round=0, warmup_iterations=1,
             warmup_until_steady=False, agreement_samples=8, stage_iterations=3, stage_batch_size=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16)
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(4, 3, 16, 16, generator=generator) for _ in range(2)]
    return model, calibration


@pytest.fixture(scope="module")
def report(tiny, tmp_path_factory):
    model, calibration = tiny
    model.train()  # run_benchmark must not switch the caller's model to eval mode
    config = BenchmarkConfig(backends=("torch-fp32", "ort-fp32", "ort-int8", "tensorrt-fp16"), batch_sizes=(4, 1),
                             stage_backends=("torch-fp32", "ort-int8"), profile=(("ort-fp32", "ort-int8"),),
                             profile_runs=1, **QUICK)
    result = run_benchmark(model, config, input_shape=(3, 16, 16), calibration=calibration,
                           out_dir=tmp_path_factory.mktemp("run") / "benchmark", model_name="tiny-resnet20")
    assert model.training
    return result


def test_every_backend_is_accounted_for(report):
    statuses = {outcome.name: outcome.status for outcome in report.backends}
    assert statuses["torch-fp32"] == statuses["ort-fp32"] == statuses["ort-int8"] == "ready"
    if not torch.cuda.is_available():
        trt = report.backend("tensorrt-fp16")
        assert trt.status == "unavailable" and "no CUDA GPU" in trt.reason
    int8 = report.backend("ort-int8")
    assert int8.info.actual_precision == "int8" and int8.info.threads == 1
    assert int8.agreement.samples == 8 and 0.0 <= int8.agreement.top1_agreement <= 1.0
    assert int8.file_bytes > 0 and int8.parameter_bytes < report.backend("ort-fp32").parameter_bytes


def test_one_interleaved_run_per_batch_size_with_speedups(report):
    assert [batch.batch_size for batch in report.batches] == [1, 4]  # ascending
    for batch in report.batches:
        assert set(batch.records) == {"torch-fp32", "ort-fp32", "ort-int8"}
        assert batch.baseline == "torch-fp32" and batch.comparison is not None
        assert len(batch.comparison.round_orders) == 2
        baseline = batch.records["torch-fp32"]
        for name in ("ort-fp32", "ort-int8"):
            pair = batch.speedups[name]
            assert pair.baseline == "torch-fp32" and pair.candidate == name
            assert 0.0 < pair.ci[0] <= pair.ci[1] < math.inf and 0.0 < pair.ratio < math.inf
            # Derived from the two records' own samples (per image, seeded bootstrap), whatever
            # they measured: the same figures exactly, so this holds under any load. Where the
            # ratio lies (and its relation to its CI) is the statistics' business, tested on
            # seeded samples in tests/bench/test_bench_stats.py.
            candidate = batch.records[name]
            assert pair == speedup(baseline.samples / baseline.batch_size, candidate.samples / candidate.batch_size,
                                   baseline_name="torch-fp32", candidate_name=name)
        record = batch.records["ort-int8"]
        assert record.batch_size == batch.batch_size and record.summary.count == 4
        assert record.metadata["actual_precision"] == "int8" and record.metadata["threads"] == 1
        assert record.metadata["memory"]["peak_rss"]["peak_bytes"] > 0
        assert record.environment["machine_fingerprint"]


def test_pipelines_and_profiles_are_in_the_report(report):
    pipelines = {p.backend: p for p in report.pipelines}
    assert pipelines["torch-fp32"].split and not pipelines["ort-int8"].split
    (profile,) = report.profiles
    assert profile.candidate.backend == "ort-int8" and profile.candidate.float_rows()


def test_outputs_are_written_and_read_back_into_the_same_typed_objects(report):
    out = report.out_dir
    data = json.loads((out / "benchmark.json").read_text())
    assert data["schema"] == "quantlens.benchmark_report" and data["model"] == "tiny-resnet20"
    assert {b["name"]: b["status"] for b in data["backends"]}["ort-int8"] == "ready"
    assert BenchmarkReport.load(out / "benchmark.json") == report
    for batch in report.batches:
        for name, record in batch.records.items():
            assert BenchmarkRecord.load(out / "records" / f"batch-{batch.batch_size}" / f"{name}.json") == record
        assert Comparison.load(out / f"comparison-batch-{batch.batch_size}.json") == batch.comparison
    pipeline = {p.backend: p for p in report.pipelines}["torch-fp32"]
    assert BenchmarkRecord.load(out / "records" / "pipeline" / "torch-fp32.json") == pipeline.measured
    assert ProfileComparison.load(out / "profile-ort-fp32-vs-ort-int8.json") == report.profiles[0]


def test_paths_in_the_json_are_relative_to_the_run_folder(report):
    assert report.folder == "benchmark" and report.out_dir == report.run_dir / "benchmark"
    assert "benchmark/benchmark.json" in report.files
    assert all(not path.startswith("/") and report.path(path).is_file() for path in report.files)
    model_files = [f for o in report.backends if o.info for f in o.info.model_files]
    assert model_files and all(f.startswith("benchmark/work/") and report.path(f).is_file() for f in model_files)
    for path in report.out_dir.rglob("*.json"):
        assert str(report.run_dir.resolve()) not in path.read_text(), path  # no absolute path anywhere
    moved = BenchmarkReport.load(report.out_dir)  # found from the folder, paths start above it
    assert moved.run_dir == report.run_dir and moved.out_dir == report.out_dir


def test_tables_and_plots(report):
    text = benchmark_text(report)
    for expected in ("speedup vs torch-fp32", "ort-int8", "batch 4 (throughput)", "batch 1 (latency)",
                     "FLOAT inside INT8", "pipeline by stage"):
        assert expected in text
    assert write_benchmark_tables(report).read_text() == text
    paths = write_benchmark_plots(report)
    assert sorted(p.name for p in paths) == ["latency.png", "stages.png", "throughput.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_backends_over_the_time_budget_are_left_out_with_the_reason(tiny, tmp_path):
    model, calibration = tiny
    config = BenchmarkConfig(backends=("torch-fp32", "ort-fp32"), batch_sizes=(2,), stages=False,
                             max_call_seconds=1e-9, **QUICK)
    report = run_benchmark(model, config, input_shape=(3, 16, 16), calibration=calibration, out_dir=tmp_path)
    assert report.run_dir == tmp_path.parent and report.folder == tmp_path.name
    (batch,) = report.batches
    assert batch.records == {} and set(batch.excluded) == {"torch-fp32", "ort-fp32"}
    assert "exceeds max_call_seconds" in batch.excluded["ort-fp32"]
    assert report.backend("ort-fp32").agreement.limited_by_time
    assert "not timed" in benchmark_text(report)


def test_wrong_input_shapes_are_refused(tiny, tmp_path):
    model, calibration = tiny
    with pytest.raises(QuantlensError, match=r"\(B, 3, 32, 32\)"):
        run_benchmark(model, BenchmarkConfig(backends=("torch-fp32",), **QUICK), input_shape=(3, 32, 32),
                      calibration=calibration, out_dir=tmp_path)


def test_a_session_step_by_step_and_its_runners_closed_when_a_step_fails(tiny, tmp_path, monkeypatch):
    model, calibration = tiny
    closed: list[str] = []
    prepare = session_module.prepare_backend

    def prepare_and_watch(name, *args, **kwargs):
        outcome, entry = prepare(name, *args, **kwargs)
        if entry is not None:
            close = entry.runner.close
            entry.runner.close = lambda: (closed.append(name), close())
        return outcome, entry

    monkeypatch.setattr(session_module, "prepare_backend", prepare_and_watch)
    config = BenchmarkConfig(backends=("torch-fp32", "ort-fp32"), batch_sizes=(2,), stages=False, **QUICK)
    session = BenchmarkSession(model, config, input_shape=(3, 16, 16), calibration=calibration, out_dir=tmp_path)
    with pytest.raises(QuantlensError, match="inside the session"):
        session.prepare()
    threads = torch.get_num_threads()
    with session:
        assert torch.get_num_threads() == 1  # the session's threads, set for its extent
        assert [o.status for o in session.prepare()] == ["ready", "ready"]
        batch = session.time_batch(2)
        assert set(batch.records) == {"torch-fp32", "ort-fp32"}
    assert torch.get_num_threads() == threads and sorted(closed) == ["ort-fp32", "torch-fp32"]
    assert session.report().batch(2) == batch

    closed.clear()

    def broken(*args, **kwargs):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(session_module, "time_batch", broken)
    with pytest.raises(RuntimeError, match="a step failed"):
        run_benchmark(model, config, input_shape=(3, 16, 16), calibration=calibration, out_dir=tmp_path / "again")
    assert sorted(closed) == ["ort-fp32", "torch-fp32"] and torch.get_num_threads() == threads
