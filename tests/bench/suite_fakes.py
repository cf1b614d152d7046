"""A benchmark report built from made-up samples, in milliseconds: every result type filled in,
no backend run. Names, precisions and spreads are the awkward ones: the longest backend names,
a fallback precision, a stalled run (robust CV far past 100 %), a timed-out backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantlens.backends.base import OperatorProfile, OpTiming, RunnerInfo
from quantlens.bench.compare import compare_records
from quantlens.bench.memory import CudaPeak, PeakRss
from quantlens.bench.pipeline import PipelineTimings
from quantlens.bench.profile import breakdown, compare_profiles
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.suite import Agreement, BackendOutcome, BatchOutcome, BenchmarkReport, CallMemory
from quantlens.recipes.benchmark import BenchmarkConfig

ENVIRONMENT = {"machine_fingerprint": "test-machine", "cpu": "made up", "threads": 2}
TIMES = dict(started_at="2026-11-22T10:00:00+00:00", finished_at="2026-11-22T10:01:00+00:00")
# backend -> (precision requested, precision that ran, median ms per image at batch 1)
BACKENDS = {"torch-fp32": ("fp32", "fp32", 4.0), "ort-int8-dynamic": ("int8-dynamic", "int8-dynamic", 2.1),
            "openvino-int8": ("int8", "int8", 1.2), "torch-fp16": ("fp16", "fp32", 9.5),
            "ort-fp32": ("fp32", "fp32", 0.15)}
STALLED = "ort-fp32"  # a fast call stalled for whole scheduler slices in a third of its samples
SLOW = "torch-fp16"  # left out of the largest batch size: over max_call_seconds


def samples(median_ms: float, n: int, seed: int, *, stalled: bool = False) -> np.ndarray:
    """(n,) seconds: lognormal around the median, 1 % spread; a stalled run has every third sample
    taking 90 ms more (a 0.15 ms call then shows a robust CV in the tens of thousands of %)."""
    values = np.random.default_rng(seed).lognormal(np.log(median_ms * 1e-3), 0.01, size=n)
    if stalled:
        values[::3] += 0.09
    return values


def info(name: str, backends: dict = BACKENDS) -> RunnerInfo:
    requested, actual, _ = backends[name]
    return RunnerInfo(backend=name, requested_precision=requested, actual_precision=actual, device="cpu",
                      provider="onnxruntime CPUExecutionProvider" if name.startswith("ort") else "torch eager (cpu)",
                      threads=2, notes=(f"{name} says something worth a line",), float_ops=("ReduceMean",),
                      model_files=(f"benchmark/work/{name}.onnx",), parameter_bytes=1_234_567)


def outcomes(backends: dict = BACKENDS) -> tuple[BackendOutcome, ...]:
    ready = tuple(BackendOutcome(name, "ready", "", f"{name} description", info(name, backends), 1.25, 10_000_000,
                                 2_345_678, 1_234_567, Agreement(64, 0.984375, 0.0123, 0.002, 12.5, name == SLOW))
                  for name in backends)
    return (*ready, BackendOutcome("tensorrt-fp16", "unavailable", "tensorrt-fp16: device 'cpu': no CUDA GPU",
                                   "TensorRT, FP16"))


def batch(batch_size: int, seed: int, backends: dict = BACKENDS) -> BatchOutcome:
    names = [n for n in backends if not (n == SLOW and batch_size == 64)]
    records = [BenchmarkRecord(name=n, samples_s=samples(backends[n][2] * batch_size ** 0.7, 30, seed + i,
                                                         stalled=n == STALLED),
                               environment=ENVIRONMENT, batch_size=batch_size, item_unit="image",
                               metadata={"backend": n}, **TIMES) for i, n in enumerate(names)]
    comparison = compare_records(records, baseline="torch-fp32")
    memory = {n: CallMemory(PeakRss(100_000_000, 150_000_000 + i, 120_000_000, i % 2 == 0, 12, 0.001),
                            CudaPeak("cuda:0", 1000, 5000 + i, 8000) if i == 0 else None)
              for i, n in enumerate(names)}
    excluded = {SLOW: "estimated 31.0 s per call (from 484.4 ms per image) exceeds max_call_seconds 30; not "
                      "timed at this size"} if batch_size == 64 else {}
    return BatchOutcome(batch_size=batch_size, records=dict(comparison.records), comparison=comparison,
                        baseline="torch-fp32", excluded=excluded, memory=memory, rounds=10)


def pipeline(backend: str, split: bool, seed: int, *, bookkeeping_s: float = 3e-7) -> PipelineTimings:
    """Stages in seconds per request of 8 images; the total is their sum plus the timer's bookkeeping."""
    parts = {"decode": 3.1, "transform": 0.8, **({"features": 6.0, "head": 0.012} if split else {"forward": 6.0}),
             "postprocess": 0.02}
    stages = {stage: samples(ms, 20, seed + i) for i, (stage, ms) in enumerate(parts.items())}
    total = np.sum(list(stages.values()), axis=0) + bookkeeping_s
    record = BenchmarkRecord(name=f"{backend}/pipeline", samples_s=total, stages=stages, environment=ENVIRONMENT,
                             batch_size=8, item_unit="image", metadata={"backend": backend}, **TIMES)
    note = ("cut at the input of fc (64 -> 10)" if split else
            f"forward not split: {backend} runs its forward as one call")
    return PipelineTimings(backend=backend, measured=record, split_note=note)


def profile():
    def ops(*rows: tuple[str, float, tuple[str, ...]]) -> tuple[OpTiming, ...]:
        return tuple(OpTiming(op_type=op, node="", seconds=s, calls=3, input_dtypes=d, implementation="CPU")
                     for op, s, d in rows)

    base = OperatorProfile("torch-fp32", 64, 3, ops(("aten::conv2d", 0.030, ("float32",)),
                                                    ("aten::linear", 0.002, ("float32",))), "torch.profiler")
    cand = OperatorProfile("openvino-int8", 64, 3, ops(
        ("Convolution_I8_very_long_kernel_name_from_the_runtime", 0.012, ("uint8", "int8")),
        ("ReduceMean", 0.003, ("float32",)), ("FakeQuantize", 0.002, ("float32",))), "PERF_COUNT")
    return compare_profiles(breakdown(base, "fp32"), breakdown(cand, "int8"))


def report(run_dir: Path = Path(".")) -> BenchmarkReport:
    config = BenchmarkConfig(backends=(*BACKENDS, "tensorrt-fp16"), batch_sizes=(1, 8, 64),
                             stage_backends=("torch-fp32", "ort-int8-dynamic"),
                             profile=(("torch-fp32", "openvino-int8"),), threads=2)
    batches = (batch(1, 10), batch(8, 20), batch(64, 30))
    return BenchmarkReport(model="resnet20_cifar", input_shape=(3, 32, 32), config=config, environment=ENVIRONMENT,
                           threads=2, backends=outcomes(), batches=batches,
                           pipelines=(pipeline("torch-fp32", True, 40), pipeline("ort-int8-dynamic", False, 50)),
                           profiles=(profile(),), notes=tuple(n for b in batches for n in b.notes),
                           folder="benchmark", files=("benchmark/benchmark.json",), run_dir=run_dir)


# Every CPU backend, medians from 50 us to 2 s per image: many rows, many decades on log axes.
CROWD = {name: ("fp32", "fp32", 0.05 * 2.6 ** i) for i, name in enumerate((
    "torch-fp32", "torch-fp32-cl", "torch-bf16", "torch-fp16", "torch-compile", "torch-int8", "ort-fp32", "ort-fp16",
    "ort-int8", "ort-int8-dynamic", "openvino-fp32", "openvino-int8"))}


def crowded_report() -> BenchmarkReport:
    config = BenchmarkConfig(backends=tuple(CROWD), batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256), threads=2)
    batches = tuple(batch(size, 100 + size, CROWD) for size in config.batch_sizes)
    pipelines = tuple(pipeline(name, i % 2 == 0, 200 + i) for i, name in enumerate(list(CROWD)[:6]))
    return BenchmarkReport(model="a_model_with_a_rather_long_name_v2", input_shape=(3, 224, 224), config=config,
                           environment=ENVIRONMENT, threads=2, backends=outcomes(CROWD), batches=batches,
                           pipelines=pipelines, profiles=(profile(),), notes=(), folder="benchmark")
