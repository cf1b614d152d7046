"""Timing every ready backend at one batch size, in one interleaved run.

Each backend's call is first estimated from its last measured call; one over `max_call_seconds`
is left out at this size (recorded with the estimate). The others get one warm call (per-shape
compilation stays out of the timing), one call under the peak-RSS sampler (and the CUDA peak on
a GPU), and then all of them are timed in ONE interleaved run (`quantlens.bench.compare`), so
drift and bursts of load fall on every backend alike.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from quantlens import events
from quantlens.backends import Target
from quantlens.bench.compare import Comparison, InterleavePlan, run_interleaved
from quantlens.bench.memory import measure_peak_cuda_memory, measure_peak_rss
from quantlens.bench.plan import TimingPlan, WarmupPolicy
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.suite.inputs import cycled
from quantlens.bench.suite.prepare import PreparedBackend
from quantlens.bench.suite.results import BackendOutcome, BatchOutcome, CallMemory
from quantlens.bench.timing import time_callable
from quantlens.recipes.benchmark import BenchmarkConfig


def warmup_policy(config: BenchmarkConfig) -> WarmupPolicy:
    # At least 1000 warm-up calls allowed: a steady-state warm-up of a microsecond call needs many.
    return WarmupPolicy(iterations=config.warmup_iterations, until_steady=config.warmup_until_steady,
                        max_seconds=config.warmup_max_seconds, max_iterations=max(1000, config.warmup_iterations))


def interleave_plan(config: BenchmarkConfig, seconds_per_call: Sequence[float]) -> InterleavePlan:
    """`config.rounds`, or more (up to `max_rounds`) until the run lasts `min_seconds` by estimate."""
    rounds = config.rounds
    if config.min_seconds > 0:
        per_round = sum(seconds_per_call) * (config.samples_per_round + config.discard_per_round)
        rounds = min(config.max_rounds, max(rounds, math.ceil(config.min_seconds / max(per_round, 1e-9))))
    return InterleavePlan(rounds=rounds, samples_per_round=config.samples_per_round, order=config.order,
                          seed=config.seed, warmup=warmup_policy(config), discard_per_round=config.discard_per_round)


def _measure_memory(run: Callable[[], object], target: Target) -> tuple[float, CallMemory]:
    """(seconds of the sampled call, its memory): one call under the RSS sampler, one more for CUDA."""
    start = time.perf_counter()
    _, rss = measure_peak_rss(run)
    seconds = time.perf_counter() - start
    cuda_peak = measure_peak_cuda_memory(run, target.device)[1] if target.is_cuda else None
    return seconds, CallMemory(rss, cuda_peak)


def _metadata(outcome: BackendOutcome, model_name: str, batch_size: int, memory: CallMemory) -> dict[str, Any]:
    """What a record says about its backend (the runner's paths are relative to the run folder)."""
    info, agreement = outcome.info, outcome.agreement
    assert info is not None  # only ready backends are timed
    return {"backend": outcome.name, "model": model_name, "batch_size": batch_size,
            "requested_precision": info.requested_precision, "actual_precision": info.actual_precision,
            "fell_back": info.fell_back, "device": info.device, "provider": info.provider, "threads": info.threads,
            "runner": info.to_dict(), "memory": memory.to_dict(), "file_bytes": outcome.file_bytes,
            "parameter_bytes": outcome.parameter_bytes, "agreement": agreement.to_dict() if agreement else None}


def time_batch(batch_size: int, config: BenchmarkConfig, target: Target, prepared: Mapping[str, PreparedBackend],
               outcomes: Mapping[str, BackendOutcome], images: torch.Tensor, model_name: str,
               environment: Mapping[str, Any]) -> BatchOutcome:
    """Time the `prepared` backends at `batch_size` on `images` (n, C, H, W), cycled to the size."""
    inputs = cycled(images, batch_size)  # (batch_size, C, H, W)
    excluded: dict[str, str] = {}
    candidates: dict[str, Callable[[], object]] = {}
    memory: dict[str, CallMemory] = {}
    call_seconds: list[float] = []
    for name, entry in prepared.items():
        estimate = entry.seconds_per_image * batch_size
        if estimate > config.max_call_seconds:
            excluded[name] = (f"estimated {estimate:.1f} s per call (from {entry.seconds_per_image * 1e3:.1f} ms per "
                              f"image) exceeds max_call_seconds {config.max_call_seconds:g}; not timed at this size")
            events.note(f"  batch {batch_size}: {name} left out: {excluded[name]}")
            continue
        run = functools.partial(entry.runner.run, inputs)  # one call on this batch size's inputs
        run()  # warm: compiles per-shape backends (torch.compile, OpenVINO) outside the timing
        seconds, memory[name] = _measure_memory(run, target)
        entry.seconds_per_image = seconds / batch_size
        call_seconds.append(seconds)
        candidates[name] = run
    metadata = {name: _metadata(outcomes[name], model_name, batch_size, memory[name]) for name in candidates}
    plan = interleave_plan(config, call_seconds)
    baseline = config.baseline_backend if config.baseline_backend in candidates else None
    synchronize = torch.cuda.synchronize if target.is_cuda else None
    comparison: Comparison | None = None
    records: dict[str, BenchmarkRecord] = {}
    if len(candidates) >= 2:
        expected = sum(call_seconds) * plan.rounds * (plan.samples_per_round + plan.discard_per_round)
        events.note(f"  batch {batch_size}: timing {len(candidates)} backends interleaved, {plan.rounds} rounds x "
                    f"{plan.samples_per_round} calls (about {expected:.0f} s after warm-up)")
        # one step per backend's warm-up, then one per round
        with events.task(f"batch {batch_size}: warm-up, rounds", total=len(candidates) + plan.rounds,
                         unit="steps") as progress:
            comparison = run_interleaved(candidates, plan, baseline=baseline or next(iter(candidates)),
                                         synchronize=synchronize, batch_size=batch_size, item_unit="image",
                                         metadata=metadata, environment=environment,
                                         noise_threshold=config.noise_threshold,
                                         on_round=lambda i: progress.advance(status=f"round {i + 1}"),
                                         on_warmup=lambda name: progress.advance(status=f"{name} warm"))
        records = dict(comparison.records)
    elif candidates:
        (name, fn), = candidates.items()
        timing_plan = TimingPlan.iterations(plan.rounds * plan.samples_per_round, warmup=plan.warmup)
        timing = time_callable(fn, timing_plan, synchronize=synchronize)
        records = {name: BenchmarkRecord.from_timing(name, timing, batch_size=batch_size, item_unit="image",
                                                     metadata=metadata[name], environment=environment)}
    return BatchOutcome(batch_size=batch_size, records=records, comparison=comparison, baseline=baseline,
                        excluded=excluded, memory=memory, rounds=plan.rounds)
