"""The benchmark stage inside an experiment, on real data, with the report written into the run."""

from __future__ import annotations

import json

import pytest

from quantlens.bench.suite import BenchmarkReport
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict

pytestmark = pytest.mark.filterwarnings("error::quantlens.bench.compare.BenchmarkWarning")


def test_experiment_with_benchmark_block(tmp_path):
    from quantlens.cli import _write_reports

    spec = spec_from_dict({
        "data": {"source": "digits"}, "model": {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}},
        "output": {"root": str(tmp_path)},
        "benchmark": {"backends": ["torch-fp32", "ort-fp32"], "batch_sizes": [1, 4], "rounds": 2,
                      "samples_per_round": 2, "warmup_until_steady": False, "stage_iterations": 3,
                      "threads": 1}})
    outcome = run_experiment(spec, reporters=[_write_reports])
    bench = outcome.run_dir / "benchmark"
    report = json.loads((bench / "benchmark.json").read_text())
    assert [b["batch_size"] for b in report["batches"]] == [1, 4]
    assert {b["name"] for b in report["backends"]} == {"torch-fp32", "ort-fp32"}
    for name in ("table.txt", "latency.png", "throughput.png", "stages.png", "comparison-batch-4.json"):
        assert (bench / name).is_file(), name
    assert outcome.evaluation.metrics.n == 1797  # evaluated as well: no test split in digits, so every sample
    assert (outcome.run_dir / "benchmark" / "benchmark.json").is_file()
    # Written while the folder was `<id>.partial`, read after it was renamed: every path still resolves.
    loaded = BenchmarkReport.load(bench / "benchmark.json")
    assert loaded == outcome.benchmark and loaded.run_dir == outcome.run_dir
    assert loaded.files and all(loaded.path(f).is_file() for f in loaded.files)
    assert all(loaded.path(f).is_file() for o in loaded.backends if o.info for f in o.info.model_files)
    for path in bench.rglob("*.json"):
        text = path.read_text()
        assert ".partial" not in text and str(tmp_path) not in text, path


def test_synthetic_data_speed_only_run(tmp_path):
    spec = spec_from_dict({
        "data": {"source": "synthetic:classes=7,channels=3,size=16,count=32"},
        "model": {"name": "resnet20_cifar"}, "eval": {"enabled": False}, "output": {"root": str(tmp_path)},
        "benchmark": {"backends": ["torch-fp32"], "batch_sizes": [2], "rounds": 1, "samples_per_round": 2,
                      "warmup_until_steady": False, "stages": False, "threads": 1}})
    outcome = run_experiment(spec)
    assert outcome.evaluation is None and outcome.benchmark is not None
    assert not (outcome.run_dir / "predictions.npz").exists()
