"""Deployed INT8 speed of ResNet-18 224 at batch 64: quantlens's QDQ file beside ORT's and NNCF's own INT8.

Acceptance: quantlens's fastest deployed INT8 artefact of ResNet-18 (224x224, batch 64) is at least
1.0x (aim 1.2x) as fast as the best of NNCF/OpenVINO's own INT8 and ONNX Runtime's own INT8, in one
interleaved run.

Artefacts (one zoo ResNet-18, 1000 classes, seeded random weights: speed does not depend on them):
  quantlens-qdq@ort        quantlens's QDQ export (`export_qdq`) on ONNX Runtime, default kernels
  quantlens-qdq@ort-exact  the same file with `session.x64quantprecision` (u8 x u8 kernels; on a CPU
                           without VNNI the default u8 x s8 kernels can saturate with 8-bit weights)
  quantlens-qdq@openvino   the same file on OpenVINO's CPU plugin (f32 hint: INT8 only where Q/DQ say)
  ort-int8                 ONNX Runtime's own `quantize_static` QDQ of the FP32 export: u8 activations,
                           s8 per-channel weights, MinMax, reduce_range on CPUs without VNNI
  openvino-int8            NNCF's `nncf.quantize` (performance preset) on OpenVINO
  ort-fp32, openvino-fp32  references
quantlens's file: BN folded (`fold_bn`), then `quantize_model` with every Conv2d/Linear at int8
per-channel weights and int8_asym per-tensor inputs, and the inputs of every residual `Add`, the
max-pool and the global average pool int8_asym per tensor, calibrated on the same images as the
peers (max observer). The peers use quantlens's backends (quantlens.backends.onnxruntime /
openvino), which build exactly those tools' own INT8. Calibration: real CIFAR-10 test JPEGs
resized to 224 when ../shared/data is there.

Timing: quantlens's interleaved harness (`run_interleaved`): each artefact is warmed up (2 calls,
which also compile OpenVINO for the shape), then every round runs each artefact once in a fresh
seeded order; one batch of 64 seeded random 224x224 images (speed does not depend on the
values), threads = `--threads` for every runtime (ORT intra_op threads, OpenVINO
INFERENCE_NUM_THREADS). Reported per artefact: median ms per batch with IQR and the bootstrap
95% CI of the median; speedups (median ratio per image) with bootstrap CIs. Then what each
artefact ran in integer and float: ONNX Runtime's optimised graph (op counts; `ort_fusion` per
quantlens layer), OpenVINO's executed kernels with their precision, and a per-operator-type
profile (one warm call, `--profile-runs` profiled calls) showing where the time goes.

Usage: python benchmarks/deployed_speed.py [OUT_DIR] [--threads 2] [--batch 64] [--rounds 10]
           [--calibration-images 32] [--profile-runs 2]
Writes OUT_DIR/deployed_speed.json (results + environment) and OUT_DIR/table.txt.
Default OUT_DIR: /tmp/quantlens-deployed-speed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from cifar_images import cifar_images
from torch import nn

from quantlens.atomic import write_json, write_text
from quantlens.backends import get_backend
from quantlens.backends.base import OperatorProfile, Target, cpu_has_int8_dot_product
from quantlens.backends.onnx_export import INPUT_NAME, OUTPUT_NAME
from quantlens.backends.onnxruntime import parse_ort_profile, session_options
from quantlens.backends.qdq import OpenVinoQdqRunner, OrtQdqRunner, export_qdq, openvino_fusion, ort_fusion
from quantlens.backends.qdq.runners import PRECISE_KEY
from quantlens.bench.compare import InterleavePlan, run_interleaved
from quantlens.bench.plan import WarmupPolicy
from quantlens.environment import capture_environment
from quantlens.models.build import build_model
from quantlens.nn import calibrate, quantize_model
from quantlens.nn.ops import Add
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes.registry import apply_pass

PEERS = ("ort-int8", "openvino-int8")
REFERENCES = ("ort-fp32", "openvino-fp32")


def int8_plans(model: nn.Module) -> dict[str, LayerPlan]:
    """Conv2d/Linear: int8 per-channel weights, int8_asym per-tensor input; Add, MaxPool2d and the global
    average pool: inputs int8_asym per tensor (left in float, the max-pool runs in f32 on OpenVINO and the
    last residual Add, with nothing quantized after it, in float on ONNX Runtime; NNCF quantizes both)."""
    plans = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            plans[name] = LayerPlan(weights=TensorSpec("int8", mode="channel"),
                                    inputs=TensorSpec("int8_asym", mode="tensor"))
        elif isinstance(module, (Add, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            plans[name] = LayerPlan(inputs=TensorSpec("int8_asym", mode="tensor"))
    return plans


# ---------------------------------------------------------------------------------------------- what ran

def ort_optimized_ops(path: Path, threads: int, precise: bool) -> dict[str, int]:
    """Op counts of ONNX Runtime's optimised graph of a file (default optimisation level)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="quantlens-ortopt-") as tmp:
        options = session_options(threads)
        if precise:
            options.add_session_config_entry(PRECISE_KEY, "1")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(sorted(Counter(n.op_type for n in graph.node).items()))


def ort_profile(path: Path, batch: np.ndarray, threads: int, precise: bool, runs: int) -> OperatorProfile:
    """ONNX Runtime's own profiler on one warm call and `runs` profiled calls, merged per op type."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="quantlens-ortprof-") as tmp:
        options = session_options(threads, profile_prefix=Path(tmp) / "profile")
        if precise:
            options.add_session_config_entry(PRECISE_KEY, "1")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    return OperatorProfile(backend=path.name, batch_size=int(batch.shape[0]), runs=runs,
                           ops=tuple(parse_ort_profile(events, skip_runs=1)), source="onnxruntime profiling")


def by_op_type(profile: OperatorProfile) -> list[dict]:
    """ms per call per (op type, input dtypes / kernel), largest first."""
    merged: dict[tuple[str, str], float] = defaultdict(float)
    for op in profile.ops:
        detail = ",".join(op.input_dtypes[:2]) or op.implementation
        if "openvino" in profile.source:
            detail = op.implementation
        merged[(op.op_type, detail)] += op.seconds / profile.runs
    rows = [{"op": op, "detail": detail, "ms": seconds * 1e3} for (op, detail), seconds in merged.items()]
    return sorted(rows, key=lambda r: -r["ms"])


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="/tmp/quantlens-deployed-speed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--profile-runs", type=int, default=2, help="0: no operator profiles")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    target = Target("cpu", args.threads)
    vnni = cpu_has_int8_dot_product()

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=1000, in_channels=3, image_size=224).eval()
    images, data_note = cifar_images(args.calibration_images, 224)
    calibration = list(images.split(8))
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x_np = x.numpy()
    print(f"ResNet-18 224, random weights, batch {args.batch}, {args.threads} threads; calibration: {data_note}; "
          f"int8 dot product (VNNI/AMX): {vnni}")

    with tempfile.TemporaryDirectory(prefix="quantlens-deployed-") as tmp:
        work = Path(tmp)
        prepared, info, build_seconds = {}, {}, {}
        for name in (*REFERENCES, *PEERS):
            start = time.perf_counter()
            runner = get_backend(name).prepare(model, images[:8], calibration, work / name, target)
            build_seconds[name] = time.perf_counter() - start
            prepared[name] = runner
            info[name] = runner.info.to_dict()
            print(f"prepared {name} in {build_seconds[name]:.1f} s: ran {runner.info.actual_precision}")

        start = time.perf_counter()
        folded = apply_pass("fold_bn", model).model.eval()
        qmodel = quantize_model(folded, int8_plans(folded))
        calibrate(qmodel, calibration)
        qdq_path = work / "resnet18.qdq.onnx"
        export = export_qdq(qmodel, images[:8], qdq_path)
        build_seconds["quantlens-qdq"] = time.perf_counter() - start
        print(f"exported quantlens QDQ in {build_seconds['quantlens-qdq']:.1f} s: {export.quantize_nodes} Q nodes, "
              f"{export.int8_weights} int8 weights, {export.int32_biases} int32 biases")
        ql_runners = {"quantlens-qdq@ort": OrtQdqRunner(qdq_path, threads=args.threads, precise=False),
                      "quantlens-qdq@ort-exact": OrtQdqRunner(qdq_path, threads=args.threads, precise=True),
                      "quantlens-qdq@openvino": OpenVinoQdqRunner(qdq_path, threads=args.threads)}

        # What each artefact runs in integer and in float.
        ort_fused = ort_fusion(qdq_path)
        ov_fused = openvino_fusion(qdq_path)
        peer_int8_path = prepared["ort-int8"].path
        graphs = {"quantlens-qdq@ort": ort_optimized_ops(qdq_path, args.threads, False),
                  "quantlens-qdq@ort-exact": ort_optimized_ops(qdq_path, args.threads, True),
                  "ort-int8": ort_optimized_ops(peer_int8_path, args.threads, False)}

        calls = {name: (lambda r=r: r.run(x)) for name, r in prepared.items()}
        calls |= {name: (lambda r=r: r.run(x_np)) for name, r in ql_runners.items()}
        plan = InterleavePlan(rounds=args.rounds, samples_per_round=1, discard_per_round=0, order="shuffle",
                              warmup=WarmupPolicy(iterations=2, until_steady=False))
        environment = capture_environment(seeds={"torch": 0, "input": 0})
        start = time.perf_counter()
        comparison = run_interleaved(calls, plan, baseline="ort-fp32", batch_size=args.batch, item_unit="image",
                                     environment=environment,
                                     on_round=lambda i: print(f"  round {i + 1}/{args.rounds}", flush=True))
        timing_seconds = time.perf_counter() - start

        profiles = {}
        if args.profile_runs:
            profiles["quantlens-qdq@ort"] = by_op_type(ort_profile(qdq_path, x_np, args.threads, False,
                                                                   args.profile_runs))
            profiles["ort-int8"] = by_op_type(ort_profile(peer_int8_path, x_np, args.threads, False,
                                                          args.profile_runs))
            profiles["quantlens-qdq@openvino"] = by_op_type(
                ql_runners["quantlens-qdq@openvino"].runner.profile_operators(x, runs=args.profile_runs))
            profiles["openvino-int8"] = by_op_type(prepared["openvino-int8"].profile_operators(x,
                                                                                               runs=args.profile_runs))
        for runner in prepared.values():
            runner.close()

    summaries = {name: record.summary for name, record in comparison.records.items()}
    medians = {name: s.median for name, s in summaries.items()}
    best_peer = min(PEERS, key=medians.get)
    ours = [n for n in ql_runners]
    best_ours = min(ours, key=medians.get)
    lines = [f"ResNet-18 224x224, batch {args.batch}, {args.threads} threads, random weights and input; "
             f"{args.rounds} interleaved rounds (shuffled), 2 warm-up calls each; timing took {timing_seconds:.0f} s",
             f"CPU: {environment['cpu_model']}; flags: "
             + " ".join(k for k, v in environment["isa_flags"].items() if v)
             + f"; VNNI/AMX-INT8: {vnni}",
             "", f"{'artefact':26s} {'median ms':>10s} {'IQR ms':>17s} {'95% CI of median':>19s} "
                 f"{'x ort-fp32':>11s} {'x best peer (' + best_peer + ')':>34s}"]
    for name, s in summaries.items():
        vs_fp32 = comparison.speedup("ort-fp32", name) if name != "ort-fp32" else None
        vs_peer = comparison.speedup(best_peer, name) if name != best_peer else None
        lines.append(f"{name:26s} {s.median * 1e3:10.0f} {s.q1 * 1e3:8.0f}-{s.q3 * 1e3:<8.0f} "
                     f"{s.median_ci[0] * 1e3:9.0f}-{s.median_ci[1] * 1e3:<9.0f} "
                     + (f"{vs_fp32.ratio:5.2f}      " if vs_fp32 else f"{'1':>5s}      ")
                     + (f"{vs_peer.ratio:5.2f} [{vs_peer.ci[0]:.2f}, {vs_peer.ci[1]:.2f}]" if vs_peer else
                        "1 (best peer)")
                     + ("  (noisy)" if comparison.noisy.get(name) else ""))
    verdict = comparison.speedup(best_peer, best_ours)
    lines += ["", f"quantlens's fastest deployed artefact: {best_ours}; vs the best peer {best_peer}: "
                  f"{verdict.ratio:.2f}x [95% CI {verdict.ci[0]:.2f}, {verdict.ci[1]:.2f}] "
                  f"(target >= 1.0x, aim 1.2x)"]
    for other in PEERS:
        for name in ours:
            s = comparison.speedup(other, name)
            lines.append(f"  {name} vs {other}: {s.ratio:.2f}x [{s.ci[0]:.2f}, {s.ci[1]:.2f}]")
    lines += ["", "what ran in integer / float:",
              f"  quantlens file on ORT: {len(ort_fused.integer_layers)} integer layers, float: "
              f"{ort_fused.float_layers or 'none'}",
              f"  quantlens file on OpenVINO (openvino_fusion's name mapping): {len(ov_fused.integer_layers)} integer "
              f"layers; float: {[f.layer for f in ov_fused.layers if f.runtime_op and not f.integer] or 'none'}; "
              f"not found in the runtime graph: {[f.layer for f in ov_fused.layers if not f.runtime_op] or 'none'}"]
    for name, counts in graphs.items():
        lines.append(f"  ORT optimised graph of {name}: {counts}")
    lines.append(f"  OpenVINO executed kernels, quantlens file: {ov_fused.op_counts}")
    for name in (*PEERS, *REFERENCES):
        lines.append(f"  {name}: ran {info[name]['actual_precision']}; float ops {info[name]['float_ops']}")
    if profiles:
        lines += ["", f"operator profile (ms per batch of {args.batch}, mean of {args.profile_runs} profiled calls):"]
        for name, rows in profiles.items():
            total = sum(r["ms"] for r in rows)
            top = "; ".join(f"{r['op']} [{r['detail']}] {r['ms']:.0f}" for r in rows[:8])
            lines.append(f"  {name} (sum {total:.0f} ms): {top}")
    for note in comparison.notes:
        lines.append(f"note: {note.text}")
    text = "\n".join(lines)
    print(text)
    write_text(out / "table.txt", text + "\n")
    write_json(out / "deployed_speed.json", {
        "what": __doc__.splitlines()[0], "model": "resnet18 (random init)", "batch": args.batch,
        "threads": args.threads, "calibration": data_note, "int8_dot_product": vnni,
        "build_seconds": build_seconds, "timing_seconds": timing_seconds,
        "medians_ms": {n: m * 1e3 for n, m in medians.items()},
        "best_peer": best_peer, "best_quantlens": best_ours,
        "verdict": {"ratio": verdict.ratio, "ci": verdict.ci, "target": 1.0, "aim": 1.2},
        "comparison": comparison.to_dict(), "runner_info": info, "qdq_export": export.to_dict(),
        "ort_fusion": ort_fused.to_dict(), "openvino_fusion": ov_fused.to_dict(), "ort_graphs": graphs,
        "profiles": profiles, "environment": environment})
    print(f"wrote {out / 'deployed_speed.json'}")


if __name__ == "__main__":
    main()
