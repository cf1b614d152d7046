"""Dynamic INT8 speed of a linear-heavy model: quantlens's deployments beside FP32 and ONNX Runtime's own.

What "dynamic INT8 for linear-heavy models on ORT and PyTorch" buys on this CPU, in one interleaved run.
Model: the zoo ViT-Tiny (192 dim, 12 blocks, 3 heads) at 224x224, patch 16 (197 tokens), 1000 classes,
seeded random weights (speed does not depend on them); its 49 Linear layers are quantized.

Artefacts:
  ort-fp32                  the FP32 ONNX export on ONNX Runtime
  quantlens-dynamic@ort     quantlens's dynamic INT8 file (`backends.dynamic_int8`: DynamicQuantizeMatMul,
                            quantlens's int8 weights; exact u8 x u8 kernels on CPUs without VNNI)
  ort-dynamic               ONNX Runtime's own `quantize_dynamic` of the FP32 export (its own weight scales)
  torch-fp32                the module, eager
  quantlens-dynamic@torchao torchao's Int8DynamicActivationInt8WeightConfig with quantlens's weights (eager)

Timing: `run_interleaved` (each artefact warmed up, then every round runs each once in a fresh seeded
order), one batch of seeded random images, `--threads` for every runtime. Reported: median ms per batch
with IQR, and speedups over ort-fp32 / torch-fp32 with bootstrap 95% CIs.

Usage: python benchmarks/dynamic_int8_speed.py [OUT_DIR] [--threads 2] [--batch 8] [--rounds 10]
Writes OUT_DIR/dynamic_int8_speed.json (results + environment) and OUT_DIR/table.txt.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from quantlens.atomic import write_json, write_text
from quantlens.backends import get_backend
from quantlens.backends.base import Target, cpu_has_int8_dot_product
from quantlens.backends.dynamic_int8 import deploy_dynamic_int8, quantize_dynamic_int8
from quantlens.bench.compare import InterleavePlan, run_interleaved
from quantlens.bench.plan import WarmupPolicy
from quantlens.environment import capture_environment
from quantlens.models.build import build_model
from quantlens.passes import functional_to_modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="/tmp/quantlens-dynamic-int8-speed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = functional_to_modules(build_model("vit_tiny", num_classes=1000, in_channels=3, image_size=224)).model
    model = model.eval()
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    print(f"ViT-Tiny 224, batch {args.batch}, {args.threads} threads, int8 dot product (VNNI/AMX): "
          f"{cpu_has_int8_dot_product()}")

    with tempfile.TemporaryDirectory(prefix="quantlens-dynamic-") as tmp:
        work = Path(tmp)
        target = Target("cpu", args.threads)
        peers = {name: get_backend(name).prepare(model, x[:2], [x[:2]], work / name, target)
                 for name in ("ort-fp32", "ort-int8-dynamic")}
        ours_ort = deploy_dynamic_int8(quantize_dynamic_int8(model, "onnxruntime"), "onnxruntime", example_input=x,
                                       folder=work / "ql", threads=args.threads)
        ours_torch = deploy_dynamic_int8(quantize_dynamic_int8(model, "torchao"), "torchao", threads=args.threads)

        def torch_fp32() -> object:
            with torch.no_grad():
                return model(x)

        calls = {"ort-fp32": lambda: peers["ort-fp32"].run(x),
                 "quantlens-dynamic@ort": lambda: ours_ort.run(x),
                 "ort-dynamic": lambda: peers["ort-int8-dynamic"].run(x),
                 "torch-fp32": torch_fp32,
                 "quantlens-dynamic@torchao": lambda: ours_torch.run(x)}
        plan = InterleavePlan(rounds=args.rounds, samples_per_round=1, discard_per_round=0, order="shuffle",
                              warmup=WarmupPolicy(iterations=2, until_steady=False))
        environment = capture_environment(seeds={"torch": 0, "input": 0})
        comparison = run_interleaved(calls, plan, baseline="ort-fp32", batch_size=args.batch, item_unit="image",
                                     environment=environment,
                                     on_round=lambda i: print(f"  round {i + 1}/{args.rounds}", flush=True))
        fusion = ours_ort.to_dict().get("ort_fusion", {})
        for runner in peers.values():
            runner.close()

    lines = [f"ViT-Tiny 224x224 (random weights), batch {args.batch}, {args.threads} threads, {args.rounds} "
             f"interleaved rounds; CPU {environment['cpu_model']}, VNNI/AMX-INT8 {cpu_has_int8_dot_product()}",
             "", f"{'artefact':28s} {'median ms':>10s} {'IQR ms':>17s} {'x ort-fp32':>20s} {'x torch-fp32':>20s}"]
    for name, record in comparison.records.items():
        s = record.summary
        cells = []
        for base in ("ort-fp32", "torch-fp32"):
            if name == base:
                cells.append(f"{'1':>20s}")
                continue
            r = comparison.speedup(base, name)
            cells.append(f"{r.ratio:6.2f} [{r.ci[0]:.2f}, {r.ci[1]:.2f}]".rjust(20))
        lines.append(f"{name:28s} {s.median * 1e3:10.1f} {s.q1 * 1e3:8.1f}-{s.q3 * 1e3:<8.1f} {''.join(cells)}")
    integer = fusion.get("integer_layers", [])
    lines.append(f"\nquantlens's ONNX file on ONNX Runtime: {len(integer)} Linear layers as integer kernels")
    lines += [f"note: {note.text}" for note in comparison.notes]
    text = "\n".join(lines)
    print(text)
    write_text(out / "table.txt", text + "\n")
    write_json(out / "dynamic_int8_speed.json", {"what": __doc__.splitlines()[0], "batch": args.batch,
                                                 "threads": args.threads, "comparison": comparison.to_dict(),
                                                 "ort_fusion": fusion, "environment": environment})
    print(f"wrote {out / 'dynamic_int8_speed.json'}")


if __name__ == "__main__":
    main()
