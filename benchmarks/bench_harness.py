"""How good is the measuring instrument itself?

(a) Overhead: the time the harness adds to every sample, measured by timing an empty callable
    (two perf_counter_ns reads and one Python call). Target: < 2 us.
(b) Precision: the 95 % bootstrap CI of the median, as a percentage of the median, for a stable
    workload (a fixed 512x512 float32 matmul on one thread, ~3 ms here). Target: < 3 %.
(c) Statistics cost: `summarize` (bootstrap CIs of median and mean, 2000 resamples) of 10^4 samples.

Usage: python benchmarks/bench_harness.py [--seconds 5] [--size 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from quantlens.bench import BenchmarkRecord, TimingPlan, empty_call_overhead, summarize, time_callable


def measure_overhead() -> None:
    summary = summarize(empty_call_overhead(100_000).samples_s)
    verdict = "OK" if summary.median < 2e-6 else "OVER BUDGET"
    print(f"(a) empty-callable overhead per sample: median {summary.median * 1e9:.0f} ns "
          f"[95% CI {summary.median_ci[0] * 1e9:.0f}-{summary.median_ci[1] * 1e9:.0f} ns], "
          f"p99 {summary.p99 * 1e9:.0f} ns, n={summary.count}  (target < 2000 ns: {verdict})")


def measure_ci_width(seconds: float, size: int) -> None:
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the workload's own parallelism is not what is measured
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        timing = time_callable(lambda: torch.mm(a, b), TimingPlan.duration(seconds))
        record = BenchmarkRecord.from_timing(f"matmul{size}", timing,
                                             metadata={"backend": "torch", "threads": 1, "dtype": "float32"})
    finally:
        torch.set_num_threads(previous_threads)
    s = record.summary
    verdict = "OK" if s.median_ci_half_width_pct < 3.0 else "OVER BUDGET"
    print(f"(b) {size}x{size} fp32 matmul, 1 thread, {seconds:g} s: median {s.median * 1e3:.3f} ms "
          f"[95% CI {s.median_ci[0] * 1e3:.3f}-{s.median_ci[1] * 1e3:.3f} ms], "
          f"CI half-width {s.median_ci_half_width_pct:.2f}% of median  (target < 3%: {verdict})")
    print(f"    n={s.count}, warm-up {record.warmup_iterations} (steady: {record.steady_state_reached}), "
          f"IQR {s.iqr * 1e3:.3f} ms, robust CV {s.robust_cv:.1%}, CV {s.cv:.1%}, "
          f"p99 {s.p99 * 1e3:.3f} ms, noisy: {record.is_noisy()}")


def measure_statistics_cost() -> None:
    samples = np.random.default_rng(0).lognormal(mean=-6.0, sigma=0.2, size=10_000)
    summarize(samples[:100])  # first call pays for lazy imports
    start = time.perf_counter()
    summarize(samples)
    elapsed = time.perf_counter() - start
    print(f"(c) summarize 10^4 samples with 2000 bootstrap resamples (median + mean CIs): {elapsed * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the matmul run (s)")
    parser.add_argument("--size", type=int, default=512, help="matrix size of the matmul workload")
    args = parser.parse_args()
    measure_overhead()
    measure_ci_width(args.seconds, args.size)
    measure_statistics_cost()


if __name__ == "__main__":
    main()
