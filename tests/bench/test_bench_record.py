"""BenchmarkRecord: JSON round trip, immutability, validation, derived values."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from quantlens.bench.plan import TimingPlan, WarmupPolicy
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stages import time_stages
from quantlens.bench.timing import time_callable
from quantlens.environment import capture_environment
from quantlens.errors import QuantlensError


@pytest.fixture(scope="module")
def environment() -> dict:
    return capture_environment(seeds={"torch": 0})


def make_record(environment, **overrides) -> BenchmarkRecord:
    rng = np.random.default_rng(0)
    fields = dict(
        name="resnet20/int8", samples_s=rng.lognormal(np.log(2e-3), 0.05, size=50).tolist(),
        warmup_samples_s=[5e-3, 3e-3, 2.1e-3], steady_state_reached=True, batch_size=64,
        item_unit="image", environment=environment,
        metadata={"backend": "torch", "precision_requested": "int8", "precision_run": "int8",
                  "device": "cpu", "threads": {"intra_op": 2}, "layers": [1, 2, 3]},
        started_at="2026-11-22T10:00:00.000000+00:00", finished_at="2026-11-22T10:00:05.000000+00:00",
    )
    fields.update(overrides)
    return BenchmarkRecord(**fields)


def test_json_round_trip_gives_an_equal_record(environment, tmp_path):
    record = make_record(environment, stages={"preprocess": [1e-4] * 50, "forward": [1.8e-3] * 50})
    path = record.save(tmp_path / "deep" / "record.json")
    loaded = BenchmarkRecord.load(path)
    assert loaded == record
    assert loaded.summary == record.summary  # recomputed from the samples, same seed
    assert loaded.metadata["threads"]["intra_op"] == 2
    assert not list(tmp_path.joinpath("deep").glob(".*.tmp"))  # atomic write left no temporary


def test_json_holds_raw_samples_summary_and_throughput(environment):
    record = make_record(environment)
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert data["samples_s"] == list(record.samples_s)
    assert data["warmup_iterations"] == 3
    assert data["summary"]["median"] == record.summary.median
    assert data["throughput"]["items_per_s"] == pytest.approx(64 / record.summary.median)
    assert data["throughput"]["unit"] == "image/s"
    assert data["environment"]["machine_fingerprint"] == environment["machine_fingerprint"]


def test_single_sample_record_writes_strict_json(environment, tmp_path):
    record = make_record(environment, samples_s=[1e-3])
    text = record.save(tmp_path / "one.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["summary"]["std"] is None
    assert BenchmarkRecord.load(tmp_path / "one.json") == record


def test_record_is_immutable_all_the_way_down(environment):
    metadata = {"backend": "torch", "nested": {"a": [1, 2]}}
    record = make_record(environment, metadata=metadata)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.samples_s = (1.0,)
    with pytest.raises(TypeError):
        record.metadata["backend"] = "onnxruntime"
    with pytest.raises(TypeError):
        record.metadata["nested"]["a"] = 3
    with pytest.raises(TypeError):
        record.environment["hostname"] = "elsewhere"
    assert record.metadata["nested"]["a"] == (1, 2)
    assert isinstance(record.samples_s, tuple)
    with pytest.raises(ValueError):
        record.samples[0] = 0.0
    metadata["nested"]["a"].append(3)  # the caller's dict is copied, not shared
    assert record.metadata["nested"]["a"] == (1, 2)
    assert hash(record) == hash(make_record(environment, metadata=metadata))


def test_derived_values(environment):
    record = make_record(environment)
    median = float(np.median(record.samples_s))
    assert record.summary.median == pytest.approx(median)
    assert record.throughput == pytest.approx(64 / median)
    low, high = record.throughput_ci
    assert low <= record.throughput <= high
    assert record.machine_fingerprint == environment["machine_fingerprint"]
    assert not record.is_noisy()
    assert make_record({}).machine_fingerprint == "unknown"


def test_a_record_whose_spread_is_undefined_counts_as_noisy(environment):
    # A median of 0 (calls under the clock's resolution): no robust CV, so nothing to vouch for.
    record = BenchmarkRecord(name="too-fast", samples_s=[0.0] * 6 + [1e-6] * 4, environment=environment,
                             started_at="2026-11-22T10:00:00+00:00", finished_at="2026-11-22T10:00:01+00:00")
    assert np.isnan(record.summary.robust_cv) and record.is_noisy()


@pytest.mark.parametrize("overrides, message", [
    ({"samples_s": []}, "empty"),
    ({"samples_s": [1.0, float("nan")]}, "finite"),
    ({"samples_s": [1.0, -1.0]}, "non-negative"),
    ({"name": " "}, "name"),
    ({"batch_size": 0}, "batch_size"),
    ({"inner_loops": 1.5}, "inner_loops"),
    ({"started_at": "yesterday"}, "started_at"),
    ({"stages": {"forward": [1.0]}}, "stage 'forward'"),
    ({"metadata": {"model": object()}}, "JSON"),
    ({"metadata": ["backend"]}, "mapping"),
])
def test_bad_records_are_refused(environment, overrides, message):
    with pytest.raises(QuantlensError, match=message):
        make_record(environment, **overrides)


def test_loading_bad_files_fails_with_a_clear_error(environment, tmp_path):
    with pytest.raises(QuantlensError, match="does not exist"):
        BenchmarkRecord.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(QuantlensError, match="cannot read"):
        BenchmarkRecord.load(tmp_path / "broken.json")
    data = make_record(environment).to_dict()
    with pytest.raises(QuantlensError, match="schema"):
        BenchmarkRecord.from_dict({**data, "schema": "something.else"})
    with pytest.raises(QuantlensError, match="version"):
        BenchmarkRecord.from_dict({**data, "version": 99})
    del data["samples_s"]
    with pytest.raises(QuantlensError, match="samples_s"):
        BenchmarkRecord.from_dict(data)


def test_from_timing_records_the_run_and_its_plan(environment):
    plan = TimingPlan.iterations(8, warmup=WarmupPolicy.fixed(2), inner_loops=3)
    timing = time_callable(lambda: sum(range(100)), plan)
    record = BenchmarkRecord.from_timing("sum", timing, batch_size=4, metadata={"backend": "python"},
                                         environment=environment)
    assert record.samples_s == timing.samples_s
    assert record.warmup_iterations == 2 and record.inner_loops == 3
    assert record.timing_plan["stop"] == {"rule": "fixed_iterations", "count": 8}
    assert record.timing_plan["warmup"]["until_steady"] is False
    assert record.started_at <= record.finished_at


def test_from_timing_keeps_stage_samples(environment):
    def step(timer):
        with timer.stage("forward"):
            sum(range(100))

    timings = time_stages(step, TimingPlan.iterations(6, warmup=WarmupPolicy.fixed(1)))
    record = BenchmarkRecord.from_timing("pipeline", timings, environment=environment)
    assert list(record.stages) == ["forward"]
    assert len(record.stages["forward"]) == 6
    assert record.stage_summary("forward").count == 6
    with pytest.raises(QuantlensError, match="no stage"):
        record.stage_summary("postprocess")
