"""Cost of simulated quantization: the fake-quantized ResNet-20 forward pass vs the FP32 one.

Target (issue 3): at batch 256, INT8 (per-channel weights, per-tensor inputs) and FP8 E4M3
simulation cost at most 1.5x the FP32 forward pass. Weights are quantized once (cached); inputs
are fake-quantized on every call with calibrated static ranges. All candidates are timed
interleaved in one run, with bootstrap confidence intervals.

    python benchmarks/bench_simulation.py [--batch 256] [--rounds 12] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from quantlens.bench.compare import InterleavePlan, run_interleaved
from quantlens.bench.plan import WarmupPolicy
from quantlens.models.build import build_model
from quantlens.nn import calibrate, quantize_model
from quantlens.recipes import QuantizationConfig, plan_layers

FORMATS = {"int8": QuantizationConfig(format="int8"), "fp8_e4m3": QuantizationConfig(format="fp8_e4m3"),
           "mxfp4": QuantizationConfig(format="mxfp4"), "nvfp4": QuantizationConfig(format="nvfp4")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32).eval()
    x = torch.randn(args.batch, 3, 32, 32)
    candidates = {"fp32": model}
    for name, cfg in FORMATS.items():
        q = quantize_model(model, plan_layers(model, cfg).layers)
        calibrate(q, [x])
        candidates[name] = q

    def forward(m):
        def call():
            with torch.inference_mode():
                m(x)
        return call

    # Warm-up builds the fused kernels (torch.compile) and settles caches before anything is timed.
    plan = InterleavePlan(rounds=args.rounds, samples_per_round=3, warmup=WarmupPolicy(iterations=3))
    result = run_interleaved({n: forward(m) for n, m in candidates.items()}, plan, baseline="fp32",
                             batch_size=args.batch, item_unit="image")
    print(f"ResNet-20, batch {args.batch}, {args.threads} thread(s); cost relative to FP32 (median, 95% CI)")
    fp32 = result.records["fp32"].summary
    low, high = fp32.median_ci
    print(f"  fp32      median {fp32.median * 1e3:8.1f} ms  [{low * 1e3:.1f}, {high * 1e3:.1f}]")
    for name in FORMATS:
        s = result.records[name].summary
        speed = result.speedup("fp32", name)
        cost, (low, high) = 1 / speed.ratio, (1 / speed.ci[1], 1 / speed.ci[0])
        print(f"  {name:<9} median {s.median * 1e3:8.1f} ms  cost x{cost:.2f} [{low:.2f}, {high:.2f}]"
              f"{'  (noisy)' if result.noisy[name] else ''}")
    if result.any_noisy:
        print("  note: the machine was noisy during this run (robust CV above threshold); rerun on a quiet machine")


if __name__ == "__main__":
    main()
