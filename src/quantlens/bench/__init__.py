"""The measurement harness: warm-up, timed loop, stage timers, statistics, records, comparisons.

    plan = TimingPlan.duration(2.0)                       # or TimingPlan.iterations(200)
    record = BenchmarkRecord.from_timing("resnet20/int8", time_callable(lambda: model(x), plan),
                                         batch_size=64, item_unit="image",
                                         metadata={"backend": "torch", "precision_run": "int8"})
    record.summary.median, record.summary.median_ci, record.throughput
    record.save("runs/bench/resnet20-int8.json")

    comparison = run_interleaved({"fp32": run_fp32, "int8": run_int8})
    comparison.speedup("fp32", "int8")                    # ratio of medians with a bootstrap CI
    comparison.notes                                      # caveats as data; comparison.warn() for warnings

Nothing here imports torch; memory helpers import it only when asked about CUDA or a module. The
benchmark of a model on real backends (a session, its typed results) is `quantlens.bench.suite`.
"""

from quantlens.bench.compare import (
    BenchmarkNote,
    BenchmarkWarning,
    Comparison,
    DifferentMachinesWarning,
    InterleavePlan,
    NoisyRunWarning,
    compare_records,
    run_interleaved,
)
from quantlens.bench.memory import (
    CudaPeak,
    FileSizes,
    ModuleBytes,
    PeakRss,
    current_rss_bytes,
    measure_peak_cuda_memory,
    measure_peak_rss,
    model_file_sizes,
    module_bytes,
    peak_rss_bytes,
)
from quantlens.bench.plan import FixedIterations, MinDuration, TimingPlan, WarmupPolicy
from quantlens.bench.record import BenchmarkRecord
from quantlens.bench.stages import StageTimer, StageTimings, time_stages
from quantlens.bench.stats import NOISY_ROBUST_CV, Speedup, Summary, bootstrap_ci, speedup, summarize
from quantlens.bench.timing import TimingResult, choose_inner_loops, empty_call_overhead, time_callable

__all__ = [
    "NOISY_ROBUST_CV", "BenchmarkNote", "BenchmarkRecord", "BenchmarkWarning", "Comparison", "CudaPeak",
    "DifferentMachinesWarning", "FileSizes", "FixedIterations", "InterleavePlan", "MinDuration",
    "ModuleBytes", "NoisyRunWarning", "PeakRss", "Speedup", "StageTimer", "StageTimings", "Summary",
    "TimingPlan", "TimingResult", "WarmupPolicy", "bootstrap_ci", "choose_inner_loops",
    "compare_records", "current_rss_bytes", "empty_call_overhead", "measure_peak_cuda_memory",
    "measure_peak_rss", "model_file_sizes", "module_bytes", "peak_rss_bytes", "run_interleaved",
    "speedup", "summarize", "time_callable", "time_stages",
]
