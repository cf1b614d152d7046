"""Interleaved runs, pairwise speedups, noise flags as notes, the different-machine refusal, and a
comparison read back from its JSON."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens.bench.compare import (
    Comparison,
    DifferentMachinesWarning,
    InterleavePlan,
    NoisyRunWarning,
    compare_records,
    run_interleaved,
)
from quantlens.bench.plan import WarmupPolicy
from quantlens.bench.record import BenchmarkRecord
from quantlens.errors import QuantlensError

# Caveats are notes on the result, never Python warnings unless asked for with `warn()`.
pytestmark = pytest.mark.filterwarnings("error::quantlens.bench.compare.BenchmarkWarning")


TIMES = dict(started_at="2026-11-22T10:00:00+00:00", finished_at="2026-11-22T10:01:00+00:00")


def record(name: str, samples, fingerprint: str | None = "aaaa", batch_size: int = 1) -> BenchmarkRecord:
    environment = {} if fingerprint is None else {"machine_fingerprint": fingerprint}
    return BenchmarkRecord(name=name, samples_s=samples, environment=environment, batch_size=batch_size, **TIMES)


def steady(median: float, seed: int, n: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).normal(median, median * 0.01, size=n)


def logging_candidates(log: list[str], names: str = "ABC"):
    return {name: (lambda name=name: log.append(name)) for name in names}


def test_alternate_order_interleaves_candidates_round_by_round():
    log: list[str] = []
    plan = InterleavePlan(rounds=4, samples_per_round=2, order="alternate",
                          warmup=WarmupPolicy.fixed(3), discard_per_round=1)
    result = run_interleaved(logging_candidates(log), plan, environment={"machine_fingerprint": "x"})
    assert result.round_orders == (("A", "B", "C"),) * 4
    assert log[:9] == ["A"] * 3 + ["B"] * 3 + ["C"] * 3  # each warmed up on its own first
    # Then per round, per candidate: 1 discarded + 2 kept samples.
    assert log[9:] == [name for _ in range(4) for name in "ABC" for _ in range(3)]
    for name in "ABC":
        assert len(result.records[name].samples_s) == 4 * 2
        assert result.records[name].warmup_iterations == 3


def test_shuffled_order_is_seeded_and_differs_between_rounds():
    log: list[str] = []
    plan = InterleavePlan(rounds=12, samples_per_round=1, order="shuffle", seed=11,
                          warmup=WarmupPolicy.fixed(0), discard_per_round=0)
    result = run_interleaved(logging_candidates(log), plan, environment={"machine_fingerprint": "x"})
    assert result.round_orders == plan.round_orders("ABC")  # decided up front, reproducible
    assert all(sorted(order) == ["A", "B", "C"] for order in result.round_orders)
    assert len(set(result.round_orders)) > 1
    assert log == [name for order in result.round_orders for name in order]
    assert InterleavePlan(rounds=12, seed=12).round_orders("ABC") != result.round_orders


def test_interleaved_run_gives_records_and_pairwise_speedups():
    plan = InterleavePlan(rounds=5, samples_per_round=4, warmup=WarmupPolicy.fixed(1))
    result = run_interleaved({"slow": lambda: sum(range(20_000)), "fast": lambda: sum(range(200)),
                              "mid": lambda: sum(range(2_000))}, plan, baseline="slow", batch_size=8,
                             metadata={"fast": {"precision_run": "int8"}},
                             environment={"machine_fingerprint": "x"})
    assert list(result.records) == ["slow", "fast", "mid"]
    assert [(p.baseline, p.candidate) for p in result.speedups] == [("slow", "fast"), ("slow", "mid"), ("fast", "mid")]
    assert result.records["fast"].metadata["precision_run"] == "int8"
    assert result.records["slow"].batch_size == 8
    assert result.records["mid"].timing_plan["interleave"]["candidates"] == ("slow", "fast", "mid")
    assert not result.different_machines
    reverse = result.speedup("mid", "fast")
    assert reverse.ratio == pytest.approx(1.0 / result.speedup("fast", "mid").ratio)


def test_speedups_of_known_records():
    base = steady(2e-3, seed=1)
    result = compare_records([record("fp32", base), record("int8", base / 4.0)])
    pair = result.speedup("fp32", "int8")
    assert pair.ratio == pytest.approx(4.0)
    assert pair.ci[0] <= 4.0 <= pair.ci[1] and pair.significant
    assert not result.any_noisy and result.notes == ()


def test_speedup_is_per_item_when_batch_sizes_differ():
    per_call_b1 = steady(1e-3, seed=2)
    result = compare_records([record("b1", per_call_b1, batch_size=1),
                              record("b8", per_call_b1 * 4.0, batch_size=8)])
    assert result.speedup("b1", "b8").ratio == pytest.approx(2.0)  # 8 items in 4x the time


def test_different_machines_are_refused_unless_allowed():
    a, b = record("here", steady(1e-3, 1), "aaaa"), record("there", steady(1e-3, 2), "bbbb")
    with pytest.raises(QuantlensError, match="different machines"):
        compare_records([a, b])
    result = compare_records([a, b], allow_different_machines=True)
    assert result.different_machines
    assert result.machine_fingerprints == {"here": "aaaa", "there": "bbbb"}
    assert [note.kind for note in result.notes] == ["different_machines"]
    assert "different machines" in str(result.notes[0])
    with pytest.warns(DifferentMachinesWarning, match="different machines"):
        result.warn()
    assert result.to_dict()["different_machines"] is True


def test_a_record_without_fingerprint_counts_as_another_machine():
    with pytest.raises(QuantlensError, match="fingerprint"):
        compare_records([record("a", steady(1e-3, 1)), record("b", steady(1e-3, 2), fingerprint=None)])


def test_noisy_records_are_flagged_in_a_note_and_warn_only_when_asked():
    bimodal = steady(1e-3, seed=3)
    bimodal[::2] *= 1.8  # every other sample slowed, as on a machine busy half of the time
    result = compare_records([record("quiet", steady(1e-3, seed=4)), record("busy", bimodal)])
    assert result.noisy == {"quiet": False, "busy": True}
    assert result.any_noisy
    (note,) = result.notes
    assert note.kind == "noisy" and note.backend == "busy" and "robust CV" in note.text and "exceeds 10%" in note.text
    with pytest.warns(NoisyRunWarning, match="'busy' is noisy"):
        result.warn()


def test_a_stalled_run_is_explained_with_its_quartiles_not_an_absurd_percentage():
    # A 0.15 ms call stalled for ~90 ms in every third sample: robust CV ~ 46 000 %.
    stalled = steady(0.15e-3, seed=5, n=60)
    stalled[::3] += 0.09
    result = compare_records([record("steady", steady(1e-3, seed=6)), record("stalled", stalled)])
    assert result.records["stalled"].summary.robust_cv > 100
    (note,) = result.notes
    assert "%" not in note.text.split("robust CV")[0]  # no huge percentage before the explanation
    assert "a quarter of the samples took 90" in note.text and "against a median of 0.15" in note.text
    assert "stalled, not merely spread" in note.text


def test_comparison_reads_back_from_its_json(tmp_path):
    bimodal = steady(1e-3, seed=3)
    bimodal[::2] *= 1.8
    result = compare_records([record("a", steady(1e-3, 1)), record("b", bimodal)])
    assert Comparison.load(result.save(tmp_path / "comparison.json")) == result
    interleaved = run_interleaved({"x": lambda: None, "y": lambda: None},
                                  InterleavePlan(rounds=3, samples_per_round=2, warmup=WarmupPolicy.fixed(1)),
                                  environment={"machine_fingerprint": "x"})
    assert Comparison.load(interleaved.save(tmp_path / "interleaved.json")) == interleaved


def test_comparison_saves_as_json(tmp_path):
    result = compare_records([record("a", steady(1e-3, 1)), record("b", steady(2e-3, 2))])
    path = result.save(tmp_path / "comparison.json")
    assert '"baseline": "a"' in path.read_text()


def test_bad_comparisons_are_refused():
    a = record("a", steady(1e-3, 1))
    with pytest.raises(QuantlensError, match="at least two"):
        compare_records([a])
    with pytest.raises(QuantlensError, match="unique"):
        compare_records([a, a])
    with pytest.raises(QuantlensError, match="baseline"):
        compare_records([a, record("b", steady(1e-3, 2))], baseline="c")
    with pytest.raises(QuantlensError, match="at least two"):
        run_interleaved({"only": lambda: None})
    with pytest.raises(QuantlensError, match="not callable"):
        run_interleaved({"a": lambda: None, "b": 3})
    with pytest.raises(QuantlensError, match="unknown candidates"):
        run_interleaved({"a": lambda: None, "b": lambda: None}, metadata={"c": {}})
    with pytest.raises(QuantlensError, match="order"):
        InterleavePlan(order="random")
    with pytest.raises(QuantlensError, match="rounds"):
        InterleavePlan(rounds=0)


@pytest.mark.filterwarnings("error")
def test_no_warning_for_a_clean_comparison():
    compare_records([record("a", steady(1e-3, 1)), record("b", steady(1e-3, 2))])
