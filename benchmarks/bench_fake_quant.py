"""Time elementwise fake quantization of a 16M-element float32 tensor against x.clone().

    python benchmarks/bench_fake_quant.py [--numel 16777216] [--repeats 15] [--threads N] [--eager]

Each case is the full activation path, scales computed from x on every call
(`quantize_dequantize`), plus the weight path for two cases (scales given, `fake_quantize`).
Rounds interleave the clone baseline with every case, so slow drift on a shared machine hits
all of them alike. Reported per case: median and interquartile range of the call time, the
effective bandwidth (read x + write the output), and the fraction of clone's bandwidth
(t_clone / t_case; 1.0 = as fast as copying the tensor). The target is >= 0.40 for per-tensor
INT8 and FP8. The first call of each case (which builds the fused kernel) is a warm-up, not timed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from quantlens.formats import KERNELS, kernel_status
from quantlens.scaling import (
    SCALING_KERNELS,
    PerBlock,
    PerChannel,
    PerTensor,
    compute_qparams,
    fake_quantize,
    quantize_dequantize,
)


def _cases(x: torch.Tensor, path: str) -> dict[str, Callable[[], torch.Tensor]]:
    w_int8 = compute_qparams(x, "int8", PerTensor(), path=path)
    w_fp8 = compute_qparams(x, "fp8_e4m3", PerTensor(), path=path)
    return {
        "int8 per-tensor": lambda: quantize_dequantize(x, "int8", PerTensor(), path=path),
        "int8 per-channel (axis 0)": lambda: quantize_dequantize(x, "int8", PerChannel(0), path=path),
        "fp8_e4m3 per-tensor": lambda: quantize_dequantize(x, "fp8_e4m3", PerTensor(), path=path),
        "fp4_e2m1 per-block-32 (fp32 scales)": lambda: quantize_dequantize(x, "fp4_e2m1", PerBlock(32), path=path),
        "mxfp4": lambda: quantize_dequantize(x, "mxfp4", path=path),
        "nvfp4": lambda: quantize_dequantize(x, "nvfp4", path=path),
        "int8 per-tensor, scale given": lambda: fake_quantize(x, "int8", w_int8, path=path),
        "fp8_e4m3 per-tensor, scale given": lambda: fake_quantize(x, "fp8_e4m3", w_fp8, path=path),
    }


def _time(fn: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], statistics.median(samples), q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=1 << 24)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--eager", action="store_true", help="time the eager fallback instead of the default path")
    args = parser.parse_args()

    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args)
    finally:
        torch.set_num_threads(previous_threads)


def run(args: argparse.Namespace) -> None:
    side = int(args.numel**0.5)
    x = torch.randn(side, args.numel // side, generator=torch.Generator().manual_seed(0))
    path = "eager" if args.eager else "auto"
    cases = _cases(x, path)
    for fn in cases.values():  # warm-up: builds the fused kernels
        fn()
        fn()
    baseline = lambda: x.clone()  # noqa: E731
    samples: dict[str, list[float]] = {"x.clone()": []} | {name: [] for name in cases}
    for _ in range(args.repeats):
        samples["x.clone()"].append(_time(baseline))
        for name, fn in cases.items():
            samples[name].append(_time(fn))

    bytes_moved = 2 * x.numel() * x.element_size()  # read x, write the output
    clone_median = statistics.median(samples["x.clone()"])
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, "
          f"x {tuple(x.shape)} float32 ({x.numel() / 2**20:.0f}M elements), path={path}, {args.repeats} rounds")
    print(f"kernels: {kernel_status(KERNELS | SCALING_KERNELS)}")
    print(f"{'case':40s} {'median ms':>10s} {'IQR ms':>15s} {'GB/s':>7s} {'vs clone':>9s}")
    for name, times in samples.items():
        q1, med, q3 = _quartiles(times)
        print(f"{name:40s} {med * 1e3:10.1f} {q1 * 1e3:7.1f}-{q3 * 1e3:<7.1f} {bytes_moved / med / 1e9:7.2f} "
              f"{clone_median / med:9.2f}")


if __name__ == "__main__":
    main()
