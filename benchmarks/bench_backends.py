"""Acceptance run of the backends: which precision is fastest on this CPU, and why INT8 is (not).

Two models, every available CPU backend, batch 1 (latency) and 64 (throughput), one interleaved
run per (model, batch size), medians with 95 % CIs and speedups over eager PyTorch FP32, the
pipeline stage breakdown, and per-operator profiles of FP32 vs INT8 (torch, ONNX Runtime and,
when installed, OpenVINO):

  * ResNet-18 at 224x224 with random weights (speed does not depend on the weights), fewer
    rounds: a batch of 64 takes seconds per call on two cores;
  * ResNet-20 at 32x32 with the pretrained CIFAR-10 checkpoint when it is beside the project.

Calibration and timing inputs are real CIFAR-10 test JPEGs (resized for ResNet-18) when the
shared data is there, else seeded random inputs (said so in the output).

Threads default to 1: on a shared 2-core VM, torch's OpenMP with 2 threads stalls at every barrier
whenever another process holds a core (measured here: ResNet-20 batch 1 went from 3.7 ms with 1
thread to 21 ms with 2 under a load average of 4.4), which would measure the neighbours rather
than the backends. Pass --threads 2 on a quiet machine.

Usage: python benchmarks/bench_backends.py [OUT_DIR] [--threads 1] [--models resnet20,resnet18]
           [--backends torch-fp32,...] [--no-compile]
Writes OUT_DIR/<model>/ (JSON records, table.txt, latency/stages/throughput PNGs) and
OUT_DIR/summary.txt. Default OUT_DIR: /tmp/quantlens-bench-backends.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from quantlens import events
from quantlens.atomic import write_text
from quantlens.backends import BACKENDS, get_backend
from quantlens.bench.pipeline import EncodedImages
from quantlens.bench.suite import BenchmarkReport, run_benchmark
from quantlens.data.decode import decode_image
from quantlens.data.source import RGB_DEFAULT
from quantlens.data.transforms import Preprocessing, normalize, to_model_layout
from quantlens.models.build import build_model
from quantlens.models.checkpoints import load_weights
from quantlens.progress_view import ProgressView
from quantlens.recipes.benchmark import BenchmarkConfig
from quantlens.report.bench_plots import write_benchmark_plots
from quantlens.report.bench_tables import print_benchmark, write_benchmark_tables

SHARED = Path(os.environ.get("QUANTLENS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
CIFAR = SHARED / "data" / "cifar10-test-jpeg"
RESNET20_WEIGHTS = SHARED / "models" / "resnet20-cifar10" / "resnet20-12fca82f.th"
GPU_ONLY = ("tensorrt-fp16", "tensorrt-int8")
INT8_PAIRS = (("torch-fp32", "torch-int8"), ("ort-fp32", "ort-int8"), ("openvino-fp32", "openvino-int8"))
STAGE_BACKENDS = ("torch-fp32", "torch-int8", "ort-fp32", "ort-int8", "openvino-int8")

# Per model: timing settings sized so that the whole run takes minutes on two cores. ResNet-18 at
# batch 64 takes seconds per call, so one sample per visit, no discarded call, and a warm-up by
# count only (each backend has already made two untimed calls at that size: the warm call and the
# peak-memory call); ResNet-20 calls are milliseconds, so more rounds and a steady-state warm-up.
# min_seconds adds rounds where calls are short (batch 1).
SETTINGS = {
    "resnet18": dict(image_size=224, num_classes=1000, weights=None,
                     stage_backends=("torch-fp32", "ort-int8", "openvino-int8"),
                     timing=dict(rounds=3, samples_per_round=1, discard_per_round=0, warmup_iterations=1,
                                 warmup_until_steady=False, min_seconds=24.0, max_rounds=10, max_call_seconds=8.0,
                                 agreement_samples=32, stage_iterations=5, profile_runs=1)),
    "resnet20_cifar": dict(image_size=32, num_classes=10, weights=RESNET20_WEIGHTS, stage_backends=STAGE_BACKENDS,
                           timing=dict(rounds=6, samples_per_round=3, discard_per_round=1, warmup_iterations=2,
                                       warmup_max_seconds=5.0, min_seconds=15.0, max_rounds=60,
                                       max_call_seconds=2.0, agreement_samples=64, stage_iterations=20,
                                       profile_runs=3)),
}
# max_call_seconds leaves out the calls that would dominate the run: emulated BF16/FP16 at batch 64
# (tens of times slower than FP32 on a CPU without native support) and, on ResNet-18, dynamic INT8
# at batch 64; the report names each one with its estimated time per call.


def real_images(count: int, size: int) -> torch.Tensor | None:
    """`count` CIFAR-10 test JPEGs (classes interleaved) as normalised (count, 3, size, size), or None."""
    if not CIFAR.is_dir():
        return None
    folders = sorted(p for p in CIFAR.iterdir() if p.is_dir())
    per_class = -(-count // len(folders))
    files = [sorted(folder.iterdir())[i] for i in range(per_class) for folder in folders][:count]
    arrays = [decode_image(f) for f in files]
    return normalize(to_model_layout(arrays, Preprocessing(3, (size, size), RGB_DEFAULT)), RGB_DEFAULT)


def model_and_data(name: str, console: Console) -> tuple[torch.nn.Module, torch.Tensor, str]:
    settings = SETTINGS[name]
    size = settings["image_size"]
    torch.manual_seed(0)
    model = build_model(name, num_classes=settings["num_classes"], in_channels=3, image_size=size).eval()
    weights = settings["weights"]
    described = "random weights"
    if weights is not None and Path(weights).is_file():
        load_weights(model, weights)
        described = f"pretrained ({Path(weights).name})"
    images = real_images(128, size)
    data = f"CIFAR-10 test JPEGs resized to {size}x{size}" if images is not None else "seeded random inputs"
    if images is None:
        images = torch.randn(128, 3, size, size, generator=torch.Generator().manual_seed(0))
    console.print(f"[bold]{name}[/bold] {size}x{size}, {described}; calibration and timing inputs: {data}")
    return model, images, described


def config_for(name: str, backends: list[str], threads: int) -> BenchmarkConfig:
    pairs = tuple(pair for pair in INT8_PAIRS if set(pair) <= set(backends))
    stage = tuple(b for b in SETTINGS[name]["stage_backends"] if b in backends)
    return BenchmarkConfig(backends=tuple(backends), batch_sizes=(1, 64), threads=threads, calibration_batches=4,
                           stage_backends=stage, stage_batch_size=8, profile=pairs, profile_batch_size=64,
                           **SETTINGS[name]["timing"])


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def summary_table(reports: dict[str, BenchmarkReport]) -> Table:
    table = Table(title="speedup over eager PyTorch FP32 (median ratio per image, 95% bootstrap CI)",
                  title_justify="left")
    for column in ("model", "batch", "backend", "ran", "median ms/call [95% CI]", "speedup [95% CI]", "noisy",
                   "top-1 agree"):
        table.add_column(column, justify="left" if column in ("model", "backend", "ran") else "right")
    for model, report in reports.items():
        for batch in report.batches:
            for backend, record in batch.records.items():
                summary = record.summary
                speedup = batch.speedups.get(backend)
                agreement = report.backend(backend).agreement
                table.add_row(model, str(batch.batch_size), backend,
                              report.backend(backend).info.precision_label,
                              f"{ms(summary.median)} [{ms(summary.median_ci[0])}, {ms(summary.median_ci[1])}]",
                              "1 (baseline)" if backend == batch.baseline else
                              f"{speedup.ratio:.2f} [{speedup.ci[0]:.2f}, {speedup.ci[1]:.2f}]" if speedup else "-",
                              "yes" if batch.comparison and batch.comparison.noisy.get(backend) else "",
                              f"{agreement.top1_agreement:.0%}" if agreement else "-")
            for backend, reason in batch.excluded.items():
                estimate = reason.split(" (from")[0]  # "estimated 4.3 s per call"
                table.add_row(model, str(batch.batch_size), backend, "-", "not timed",
                              f"{estimate} > {report.config.max_call_seconds:g} s cap", "", "")
    return table


def int8_verdict(reports: dict[str, BenchmarkReport], console: Console) -> None:
    console.print("\n[bold]Is INT8 several times faster than FP32 at batch 64?[/bold]")
    for model, report in reports.items():
        batch = report.batch(64)
        if batch.comparison is None:
            continue
        for fp32, int8 in (*INT8_PAIRS, ("ort-fp32", "ort-int8-dynamic")):
            if int8 not in batch.records:
                continue
            baselines = [name for name in dict.fromkeys(("torch-fp32", fp32)) if name in batch.records]
            text = "; ".join(f"{s.ratio:.2f}x vs {name} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]"
                             for name, s in ((b, batch.comparison.speedup(b, int8)) for b in baselines))
            console.print(f"  {model}: {int8}: {text}", markup=False, highlight=False)
        for comparison in report.profiles:
            console.print(f"  {model}: why {comparison.candidate.backend} vs {comparison.baseline.backend} "
                          f"(operator profile, batch {comparison.candidate.batch_size}):", markup=False)
            for line in comparison.explanation:
                console.print(f"    - {line}", markup=False, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="/tmp/quantlens-bench-backends")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="resnet20_cifar,resnet18")
    parser.add_argument("--backends", default=None, help="comma-separated; default: every CPU backend")
    parser.add_argument("--no-compile", action="store_true", help="leave torch-compile out (it compiles for "
                                                                    "tens of seconds per model and batch size)")
    args = parser.parse_args()
    out = Path(args.out_dir)
    console = Console(width=200)
    record = Console(width=200, record=True, file=io.StringIO())  # the same output, kept for summary.txt
    requested = args.backends.split(",") if args.backends else [n for n in BACKENDS.names() if n not in GPU_ONLY]
    if args.no_compile:
        requested = [n for n in requested if n != "torch-compile"]
    for name in GPU_ONLY:
        ok, reason = get_backend(name).available()
        console.print(f"{name}: {'available' if ok else 'skipped: ' + reason}", markup=False)
    reports: dict[str, BenchmarkReport] = {}
    started = time.perf_counter()
    for name in args.models.split(","):
        model, images, _ = model_and_data(name, console)
        config = config_for(name, requested, args.threads)
        calibration = list(images[:64].split(16))  # 4 batches of 16 images
        encoded = EncodedImages.from_folder(CIFAR, 8) if CIFAR.is_dir() else None
        model_started = time.perf_counter()
        with ProgressView(console) as view, events.listening(view):
            report = run_benchmark(model, config, input_shape=(3, *images.shape[2:]), calibration=calibration,
                                   validation=images[64:], images=encoded, out_dir=out / name, model_name=name)
        write_benchmark_tables(report)
        write_benchmark_plots(report)
        for target in (console, record):
            print_benchmark(report, target)
        console.print(f"{name}: {time.perf_counter() - model_started:.0f} s; outputs in {out / name}")
        reports[name] = report
    for target in (console, record):
        target.print(summary_table(reports))
        int8_verdict(reports, target)
    elapsed = f"total {time.perf_counter() - started:.0f} s, {args.threads} thread(s)"
    console.print(elapsed)
    record.print(elapsed)
    write_text(out / "summary.txt", record.export_text())
    console.print(f"summary: {out / 'summary.txt'}")


if __name__ == "__main__":
    main()
