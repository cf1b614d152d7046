"""Benchmark one model on several backends: prepare, check, time side by side, profile.

`run_benchmark` does, in order:

1. Prepares every listed backend (one FP32 ONNX export shared by the ONNX-based ones). A backend
   that cannot run here (missing package, no GPU) or fails to prepare (an export that disagrees
   with torch, an untraceable model) is skipped, with the reason recorded.
2. Checks each prepared backend against eager FP32 on the validation images: top-1 agreement and
   the largest logit difference, so a fast but wrong backend is visible next to its speed.
3. For each batch size, ascending: estimates each backend's call from its last measured call and
   leaves out those over `max_call_seconds` (recorded with the estimate); measures the peak RSS of
   one call (and CUDA peak memory on a GPU); then times all of them in ONE interleaved run
   (`quantlens.bench.compare.run_interleaved`), so drift and bursts of load fall on every backend
   alike; speedups over the baseline come with bootstrap CIs, noisy runs are flagged.
4. Times the classification pipeline stage by stage for `stage_backends`.
5. Profiles the `profile` pairs per operator ("why is INT8 (not) faster?").

Torch's thread count is set for the whole run and restored afterwards. Records, comparisons,
pipeline records, profiles and the report go to `out_dir` as JSON (atomic writes); text tables
and figures are the report layer's (`quantlens.report.bench_tables`, `quantlens.report.bench_plots`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console
from torch import nn

from quantlens.atomic import write_json
from quantlens.backends import BackendError, Runner, RunnerInfo, Target, get_backend, torch_threads, usable_cores
from quantlens.bench.compare import Comparison, InterleavePlan, run_interleaved
from quantlens.bench.memory import current_rss_bytes, measure_peak_cuda_memory, measure_peak_rss, model_file_sizes
from quantlens.bench.pipeline import (
    ClassificationPipeline,
    EncodedImages,
    PipelineTimings,
    forward_split,
    time_pipeline,
)
from quantlens.bench.plan import TimingPlan, WarmupPolicy
from quantlens.bench.profile import ProfileComparison, compare_profiles, profile_runner
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stats import Speedup
from quantlens.bench.timing import time_callable
from quantlens.data.source import default_normalization
from quantlens.data.transforms import Preprocessing
from quantlens.environment import capture_environment
from quantlens.errors import QuantlensError
from quantlens.recipes.benchmark import BenchmarkConfig

REPORT_SCHEMA = "quantlens.benchmark_report"
REPORT_VERSION = 1
# Below this top-1 agreement with eager FP32 a backend gets a note next to its speed.
AGREEMENT_NOTE_BELOW = 0.95


@dataclass(frozen=True)
class Agreement:
    """A backend's logits against eager FP32's on the same images."""

    samples: int
    top1_agreement: float  # fraction of images with the same top-1 class
    max_abs_diff: float  # largest |logit difference|
    mean_abs_diff: float
    reference_max_abs: float  # largest |FP32 logit|, the scale the differences compare with
    limited_by_time: bool  # fewer images than asked, to keep the check under max_call_seconds

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "top1_agreement": self.top1_agreement, "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": self.mean_abs_diff, "reference_max_abs": self.reference_max_abs,
                "limited_by_time": self.limited_by_time}


@dataclass(frozen=True)
class BackendOutcome:
    """What became of one requested backend."""

    name: str
    status: Literal["ready", "unavailable", "failed"]
    reason: str = ""
    description: str = ""
    info: RunnerInfo | None = None
    prepare_seconds: float = 0.0
    prepare_rss_increase_bytes: int = 0  # RSS after preparing minus before (allocator caches included)
    file_bytes: int = 0  # model file(s) on disk
    parameter_bytes: int = 0  # weights as the runtime holds them
    agreement: Agreement | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "description": self.description,
                "info": self.info.to_dict() if self.info else None, "prepare_seconds": self.prepare_seconds,
                "prepare_rss_increase_bytes": self.prepare_rss_increase_bytes, "file_bytes": self.file_bytes,
                "parameter_bytes": self.parameter_bytes,
                "agreement": self.agreement.to_dict() if self.agreement else None}


@dataclass(frozen=True)
class BatchOutcome:
    """One batch size: the timed records (from one interleaved run), speedups over the baseline,
    memory per backend, and the backends left out with the reason."""

    batch_size: int
    records: dict[str, BenchmarkRecord]
    comparison: Comparison | None  # None when fewer than two backends were timed
    baseline: str | None  # None when the baseline was not timed at this size
    speedups: dict[str, Speedup]  # candidate -> speedup over the baseline
    excluded: dict[str, str]  # backend -> why it was not timed
    memory: dict[str, dict[str, Any]]  # backend -> peak RSS (and CUDA) of one call
    rounds: int

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "baseline": self.baseline, "rounds": self.rounds,
                "timed": list(self.records), "excluded": dict(self.excluded),
                "speedups": {name: s.to_dict() for name, s in self.speedups.items()},
                "noisy": dict(self.comparison.noisy) if self.comparison else {},
                "notes": list(self.comparison.notes) if self.comparison else [],
                "memory": self.memory,
                "summaries": {name: {"summary": r.summary.to_dict(), "throughput": r.throughput,
                                     "throughput_ci": r.throughput_ci} for name, r in self.records.items()}}


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything one benchmark run measured; `to_dict()` is what `benchmark.json` holds."""

    model: str
    input_shape: tuple[int, int, int]
    config: BenchmarkConfig
    environment: dict[str, Any]
    threads: int
    backends: tuple[BackendOutcome, ...]
    batches: tuple[BatchOutcome, ...]
    pipelines: tuple[PipelineTimings, ...]
    profiles: tuple[ProfileComparison, ...]
    notes: tuple[str, ...]
    out_dir: Path
    files: tuple[Path, ...] = field(default=())

    def backend(self, name: str) -> BackendOutcome:
        for outcome in self.backends:
            if outcome.name == name:
                return outcome
        raise QuantlensError(f"backend {name!r} was not part of this benchmark")

    def batch(self, batch_size: int) -> BatchOutcome:
        for outcome in self.batches:
            if outcome.batch_size == batch_size:
                return outcome
        raise QuantlensError(f"batch size {batch_size} was not part of this benchmark")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "version": REPORT_VERSION, "model": self.model,
                "input_shape": list(self.input_shape), "threads": self.threads,
                "config": self.config.model_dump(mode="json"), "environment": self.environment,
                "backends": [b.to_dict() for b in self.backends], "batches": [b.to_dict() for b in self.batches],
                "pipelines": [p.to_dict() for p in self.pipelines], "profiles": [p.to_dict() for p in self.profiles],
                "notes": list(self.notes), "files": [str(f) for f in self.files]}


# ---- helpers -------------------------------------------------------------------------------------

def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text, markup=False, highlight=False)


def _cycled(images: torch.Tensor, size: int) -> torch.Tensor:
    """`size` images, repeating `images` (N, C, H, W) as often as needed: (size, C, H, W)."""
    repeats = math.ceil(size / images.shape[0])
    return torch.cat([images] * repeats)[:size].contiguous()


def _timed_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _check_inputs(calibration: Sequence[torch.Tensor], validation: torch.Tensor | None,
                  input_shape: tuple[int, int, int],
                  config: BenchmarkConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
    if len(input_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise QuantlensError(f"input_shape must be (C, H, W) positive integers, got {input_shape}")
    batches = [b.detach().float().cpu() for b in list(calibration)[:config.calibration_batches]]
    if not batches:
        raise QuantlensError("run_benchmark needs at least one calibration batch")
    for batch in [*batches, *([] if validation is None else [validation])]:
        if batch.dim() != 4 or tuple(batch.shape[1:]) != tuple(input_shape):
            raise QuantlensError(f"calibration and validation batches must be (B, {', '.join(map(str, input_shape))}), "
                                 f"got {tuple(batch.shape)}")
    images = torch.cat(batches) if validation is None else validation.detach().float().cpu()
    return batches, images[:config.agreement_samples].contiguous()


def _agreement(runner: Runner, images: torch.Tensor, reference: torch.Tensor, limited: bool) -> Agreement:
    output = runner.run(images).float().cpu()  # (n, classes)
    diff = (output - reference[:images.shape[0]]).abs()
    return Agreement(samples=int(images.shape[0]),
                     top1_agreement=float((output.argmax(1) == reference[:images.shape[0]].argmax(1)).float().mean()),
                     max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                     reference_max_abs=float(reference.abs().max()), limited_by_time=limited)


def _load_note(threads: int, when: str) -> str | None:
    """A note when the machine's 1-minute load average says other work competes for the cores."""
    if not hasattr(os, "getloadavg"):  # not on Windows
        return None
    cores = usable_cores()
    load = os.getloadavg()[0]
    # The 1-minute average includes this process's own threads (it prepared and ran the backends):
    # what competes is the rest, and it hurts once it exceeds the cores this run leaves free.
    others = load - threads
    if others <= max(cores - threads, 0) + 0.5:
        return None
    advice = ("libraries that wait at a barrier for all their threads (torch's OpenMP) stall whenever a core is "
              "taken; threads=1 is steadier on a busy machine" if threads > 1 else
              "even a single-threaded backend loses its core now and then (see the noise flags)")
    return f"load average {load:.1f} on {cores} usable cores {when}: other work competes for the cores; {advice}"


def _file_bytes(info: RunnerInfo) -> int:
    return sum(model_file_sizes(path).total_bytes for path in info.model_files)


# ---- the stages of a run ---------------------------------------------------------------------------

@dataclass
class _Prepared:
    """A ready backend while the run goes on: its runner and its latest per-image time estimate."""

    runner: Runner
    seconds_per_image: float


def _prepare_all(model: nn.Module, config: BenchmarkConfig, target: Target, calibration: list[torch.Tensor],
                 images: torch.Tensor, reference: torch.Tensor, work_dir: Path,
                 console: Console | None) -> tuple[list[BackendOutcome], dict[str, _Prepared]]:
    outcomes: list[BackendOutcome] = []
    prepared: dict[str, _Prepared] = {}
    example = images[:8]
    for name in config.backends:
        backend = get_backend(name)
        ok, reason = backend.available(target)
        if not ok:
            _say(console, f"  {name}: unavailable: {reason}")
            outcomes.append(BackendOutcome(name, "unavailable", reason, backend.description))
            continue
        rss_before = current_rss_bytes()
        start = time.perf_counter()
        try:
            runner = backend.prepare(model, example, calibration, work_dir, target)
        except BackendError as error:
            _say(console, f"  {name}: failed: {error}")
            outcomes.append(BackendOutcome(name, "failed", str(error), backend.description))
            continue
        prepare_seconds = time.perf_counter() - start
        rss_increase = max(0, current_rss_bytes() - rss_before)
        one = images[:1]
        runner.run(one)  # lazy initialisation (and compilation at batch 1) before the estimate
        seconds_per_image = _timed_call(lambda r=runner, x=one: r.run(x))
        count = min(images.shape[0], max(1, int(config.max_call_seconds / max(seconds_per_image, 1e-9))))
        agreement = _agreement(runner, images[:count], reference, limited=count < images.shape[0])
        info = runner.info
        _say(console, f"  {name}: ready in {prepare_seconds:.1f} s; ran {info.precision_label} on {info.device} "
                      f"({info.provider}, {info.threads} threads); top-1 agreement with FP32 "
                      f"{agreement.top1_agreement:.1%} on {agreement.samples} images, max |dlogit| "
                      f"{agreement.max_abs_diff:.3g}")
        for note in info.notes:
            _say(console, f"      - {note}")
        outcomes.append(BackendOutcome(name, "ready", "", backend.description, info, prepare_seconds, rss_increase,
                                       _file_bytes(info), info.parameter_bytes, agreement))
        prepared[name] = _Prepared(runner, seconds_per_image)
    return outcomes, prepared


def _warmup(config: BenchmarkConfig) -> WarmupPolicy:
    return WarmupPolicy(iterations=config.warmup_iterations, until_steady=config.warmup_until_steady,
                        max_seconds=config.warmup_max_seconds, max_iterations=max(1000, config.warmup_iterations))


def _plan(config: BenchmarkConfig, seconds_per_call: Sequence[float]) -> InterleavePlan:
    rounds = config.rounds
    if config.min_seconds > 0:
        per_round = sum(seconds_per_call) * (config.samples_per_round + config.discard_per_round)
        rounds = min(config.max_rounds, max(rounds, math.ceil(config.min_seconds / max(per_round, 1e-9))))
    return InterleavePlan(rounds=rounds, samples_per_round=config.samples_per_round, order=config.order,
                          seed=config.seed, warmup=_warmup(config), discard_per_round=config.discard_per_round)


def _metadata(name: str, model_name: str, batch_size: int, outcome: BackendOutcome, info: RunnerInfo,
              memory: dict[str, Any]) -> dict[str, Any]:
    return {"backend": name, "model": model_name, "batch_size": batch_size,
            "requested_precision": info.requested_precision, "actual_precision": info.actual_precision,
            "fell_back": info.fell_back, "device": info.device, "provider": info.provider, "threads": info.threads,
            "runner": info.to_dict(), "memory": memory, "file_bytes": outcome.file_bytes,
            "parameter_bytes": outcome.parameter_bytes,
            "agreement": outcome.agreement.to_dict() if outcome.agreement else None}


def _run_batch(batch_size: int, config: BenchmarkConfig, target: Target, prepared: dict[str, _Prepared],
               outcomes: dict[str, BackendOutcome], images: torch.Tensor, model_name: str,
               environment: dict[str, Any], console: Console | None) -> BatchOutcome:
    inputs = _cycled(images, batch_size)  # (batch_size, C, H, W)
    excluded: dict[str, str] = {}
    candidates: dict[str, Callable[[], object]] = {}
    memory: dict[str, dict[str, Any]] = {}
    call_seconds: list[float] = []
    for name, entry in prepared.items():
        estimate = entry.seconds_per_image * batch_size
        if estimate > config.max_call_seconds:
            excluded[name] = (f"estimated {estimate:.1f} s per call (from {entry.seconds_per_image * 1e3:.1f} ms per "
                              f"image) exceeds max_call_seconds {config.max_call_seconds:g}; not timed at this size")
            continue
        runner = entry.runner
        entry.runner.run(inputs)  # warm: compiles per-shape backends (torch.compile, OpenVINO) outside the timing
        start = time.perf_counter()
        _, rss = measure_peak_rss(lambda r=runner: r.run(inputs))
        seconds = time.perf_counter() - start
        entry.seconds_per_image = seconds / batch_size
        call_seconds.append(seconds)
        memory[name] = {"peak_rss": rss.to_dict()}
        if target.is_cuda:
            _, cuda_peak = measure_peak_cuda_memory(lambda r=runner: r.run(inputs), target.device)
            memory[name]["cuda_peak"] = None if cuda_peak is None else {
                "peak_allocated_bytes": cuda_peak.peak_allocated_bytes, "increase_bytes": cuda_peak.increase_bytes}
        candidates[name] = (lambda r=runner: r.run(inputs))
    for name, reason in excluded.items():
        _say(console, f"  batch {batch_size}: {name} left out: {reason}")
    metadata = {name: _metadata(name, model_name, batch_size, outcomes[name], prepared[name].runner.info, memory[name])
                for name in candidates}
    plan = _plan(config, call_seconds)
    baseline = config.baseline_backend if config.baseline_backend in candidates else None
    synchronize = torch.cuda.synchronize if target.is_cuda else None
    comparison: Comparison | None = None
    if len(candidates) >= 2:
        expected = sum(call_seconds) * plan.rounds * (plan.samples_per_round + plan.discard_per_round)
        _say(console, f"  batch {batch_size}: timing {len(candidates)} backends interleaved, {plan.rounds} rounds x "
                      f"{plan.samples_per_round} calls (about {expected:.0f} s after warm-up)")
        comparison = run_interleaved(candidates, plan, baseline=baseline or next(iter(candidates)),
                                     synchronize=synchronize, batch_size=batch_size, item_unit="image",
                                     metadata=metadata, environment=environment,
                                     noise_threshold=config.noise_threshold)
        records = dict(comparison.records)
    elif candidates:
        (name, fn), = candidates.items()
        timing_plan = TimingPlan.iterations(plan.rounds * plan.samples_per_round, warmup=plan.warmup)
        timing = time_callable(fn, timing_plan, synchronize=synchronize)
        records = {name: BenchmarkRecord.from_timing(name, timing, batch_size=batch_size, item_unit="image",
                                                     metadata=metadata[name], environment=environment)}
    else:
        records = {}
    speedups: dict[str, Speedup] = {}
    if comparison is not None and baseline is not None:
        speedups = {name: comparison.speedup(baseline, name) for name in records if name != baseline}
    return BatchOutcome(batch_size=batch_size, records=records, comparison=comparison, baseline=baseline,
                        speedups=speedups, excluded=excluded, memory=memory, rounds=plan.rounds)


def _run_pipelines(config: BenchmarkConfig, prepared: dict[str, _Prepared], images: torch.Tensor,
                   input_shape: tuple[int, int, int], encoded: EncodedImages | None,
                   preprocessing: Preprocessing | None, target: Target,
                   console: Console | None) -> tuple[list[PipelineTimings], list[str]]:
    channels, height, width = input_shape
    encoded = encoded or EncodedImages.synthetic(config.stage_batch_size, height, width,
                                                 channels=channels, seed=config.seed)
    preprocessing = preprocessing or Preprocessing(channels, (height, width), default_normalization(channels))
    plan = TimingPlan.iterations(config.stage_iterations, warmup=_warmup(config))
    results, notes = [], []
    for name in config.stage_backend_names:
        entry = prepared.get(name)
        if entry is None:
            notes.append(f"pipeline of {name} not timed: the backend is not ready")
            continue
        estimate = entry.seconds_per_image * len(encoded)
        if estimate > config.max_call_seconds:
            notes.append(f"pipeline of {name} not timed: estimated {estimate:.1f} s per request exceeds "
                         f"max_call_seconds {config.max_call_seconds:g}")
            continue
        split, split_note = (forward_split(entry.runner, images[:2]) if config.split_forward
                             else (None, "forward not split: split_forward is off"))
        pipeline = ClassificationPipeline(encoded, preprocessing, entry.runner.run, split=split)
        _say(console, f"  pipeline {name}: {encoded.description}, {config.stage_iterations} requests; {split_note}")
        results.append(time_pipeline(pipeline, plan, backend=name, split_note=split_note,
                                     synchronize=torch.cuda.synchronize if target.is_cuda else None))
    return results, notes


def _run_profiles(config: BenchmarkConfig, prepared: dict[str, _Prepared], images: torch.Tensor,
                  console: Console | None) -> tuple[list[ProfileComparison], list[str]]:
    results, notes = [], []
    batch = _cycled(images, config.profile_batch)
    for baseline, candidate in config.profile:
        missing = [name for name in (baseline, candidate) if name not in prepared]
        if missing:
            notes.append(f"profile {baseline} vs {candidate} skipped: {', '.join(missing)} not ready")
            continue
        too_slow = [name for name in (baseline, candidate)
                    if prepared[name].seconds_per_image * config.profile_batch > config.max_call_seconds]
        if too_slow:
            notes.append(f"profile {baseline} vs {candidate} skipped: a call of {', '.join(too_slow)} at batch "
                         f"{config.profile_batch} is estimated over max_call_seconds {config.max_call_seconds:g}")
            continue
        _say(console, f"  profiling {baseline} vs {candidate} at batch {config.profile_batch}")
        results.append(compare_profiles(profile_runner(prepared[baseline].runner, batch, runs=config.profile_runs),
                                        profile_runner(prepared[candidate].runner, batch, runs=config.profile_runs)))
    return results, notes


def _write_outputs(report: BenchmarkReport) -> tuple[Path, ...]:
    out = report.out_dir
    files: list[Path] = []
    for batch in report.batches:
        for name, record in batch.records.items():
            files.append(record.save(out / "records" / f"batch-{batch.batch_size}" / f"{name}.json"))
        if batch.comparison is not None:
            files.append(batch.comparison.save(out / f"comparison-batch-{batch.batch_size}.json"))
    for pipeline in report.pipelines:
        files.append(pipeline.record(environment=report.environment,
                                     metadata={"backend": pipeline.backend, "model": report.model,
                                               "split_note": pipeline.split_note})
                     .save(out / "records" / "pipeline" / f"{pipeline.backend}.json"))
    for profile in report.profiles:
        files.append(write_json(out / f"profile-{profile.baseline.backend}-vs-{profile.candidate.backend}.json",
                                profile.to_dict()))
    return tuple(files)


def run_benchmark(model: nn.Module, config: BenchmarkConfig, *, input_shape: tuple[int, int, int],
                  calibration: Sequence[torch.Tensor], out_dir: str | Path, validation: torch.Tensor | None = None,
                  images: EncodedImages | None = None, preprocessing: Preprocessing | None = None,
                  model_name: str = "model", console: Console | None = None) -> BenchmarkReport:
    """Benchmark `model` (FP32, eval mode; left unchanged) on `config.backends`; see the module docstring.

    input_shape: (C, H, W) of one image. calibration: float32 (B, C, H, W) batches, the first
    `config.calibration_batches` of which calibrate static INT8. validation: float32 (N, C, H, W)
    images for the agreement check and as timing inputs (default: the calibration images).
    images / preprocessing: what the pipeline decodes and how it transforms it (default: synthetic
    JPEGs at the input size, ImageNet statistics). Writes JSON under `out_dir`; returns the report.
    """
    if not isinstance(config, BenchmarkConfig):
        raise QuantlensError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    input_shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
    calibration_batches, agreement_images = _check_inputs(calibration, validation, input_shape, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = usable_cores() if config.threads == "auto" else int(config.threads)
    target = Target(device=config.device, threads=threads)
    with torch_threads(threads):
        environment = capture_environment(seeds={"benchmark": config.seed})
        load_notes = [_load_note(threads, "when the benchmark started")]
        with torch.no_grad():  # a copy: eval() and cpu() would change the caller's model
            reference = copy.deepcopy(model).eval().cpu()(agreement_images).float()  # (n, classes), eager FP32
        _say(console, f"preparing {len(config.backends)} backends for {model_name} {input_shape}, {threads} threads")
        outcomes, prepared = _prepare_all(model, config, target, calibration_batches, agreement_images, reference,
                                          out_dir / "work", console)
        notes = [f"{o.name}: top-1 agreement with eager FP32 is {o.agreement.top1_agreement:.1%} on "
                 f"{o.agreement.samples} images; check its accuracy before trusting its speed"
                 for o in outcomes if o.agreement and o.agreement.top1_agreement < AGREEMENT_NOTE_BELOW]
        if not prepared:
            raise QuantlensError("no backend could be prepared: " + "; ".join(
                o.reason if o.reason.startswith(o.name) else f"{o.name}: {o.reason}" for o in outcomes))
        by_name = {o.name: o for o in outcomes}
        try:
            batches = [_run_batch(batch_size, config, target, prepared, by_name, agreement_images, model_name,
                                  environment, console) for batch_size in sorted(config.batch_sizes)]
            pipelines: list[PipelineTimings] = []
            if config.stages:
                pipelines, pipeline_notes = _run_pipelines(config, prepared, agreement_images, input_shape, images,
                                                           preprocessing, target, console)
                notes += pipeline_notes
            profiles, profile_notes = _run_profiles(config, prepared, agreement_images, console)
            notes += profile_notes
        finally:
            for entry in prepared.values():
                entry.runner.close()
        load_notes.append(_load_note(threads, "when it ended"))
    notes += [note for note in load_notes if note]
    for batch in batches:
        if batch.comparison is not None:
            notes += [f"batch {batch.batch_size}: {note}" for note in batch.comparison.notes]
    report = BenchmarkReport(model=model_name, input_shape=input_shape, config=config, environment=environment,
                             threads=threads, backends=tuple(outcomes), batches=tuple(batches),
                             pipelines=tuple(pipelines), profiles=tuple(profiles), notes=tuple(notes),
                             out_dir=out_dir)
    files = _write_outputs(report)
    report_path = out_dir / "benchmark.json"
    report = dataclasses.replace(report, files=(*files, report_path))
    write_json(report_path, report.to_dict())
    return report
