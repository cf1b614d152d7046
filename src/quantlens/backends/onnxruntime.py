"""ONNX Runtime backends: FP32, FP16, INT8 static (QDQ) and INT8 dynamic.

All four start from one verified FP32 export (`onnx_export`). What ran is read from a profiled
call after the session is built, never assumed:

* `ort-fp16` converts the graph to FP16 (`onnxruntime.transformers.float16`, float32 inputs and
  outputs kept). The CUDA provider has FP16 kernels; the CPU provider on x86 has none for Conv or
  Gemm, so ONNX Runtime inserts casts around them and computes in FP32 with FP16-rounded weights.
  The profile shows which, and the runner reports "fp16->fp32" with that note.
* `ort-int8` is static QDQ quantization: uint8 activations and per-channel int8 weights, MinMax
  ranges from the calibration batches, then `quant_pre_process` (shape inference, BN folding) before
  it. ONNX Runtime fuses each DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv. Ops it
  cannot fuse (ReduceMean for global pooling, Pad) run in float between a DequantizeLinear and a
  QuantizeLinear and are listed in `float_ops`. QOperator format is not offered: with int8
  activations it is several times *slower* than FP32 on x86.
* `ort-int8-dynamic` quantizes weights ahead of time and activations at run time
  (DynamicQuantizeLinear -> ConvInteger -> float rescale). It is labelled "int8-dynamic", not
  "int8": on CNNs it is usually slower than FP32, and the benchmark shows by how much.

Without VNNI (plain AVX2) ONNX Runtime's u8 x s8 kernels add pairs of products in saturating int16
lanes; 8-bit weights can overflow them. On such CPUs the INT8 backends quantize weights to 7 bits
(`reduce_range`), as ONNX Runtime's documentation advises, and say so in their notes. (Measured on
the pretrained ResNet-20 and CIFAR-10 JPEGs on an AVX2 EPYC: top-1 agreement with FP32 90.9 % with
8-bit weights, 97.7 % with 7-bit.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens.backends.base import (
    Backend,
    BackendError,
    OperatorProfile,
    OpTiming,
    Runner,
    RunnerInfo,
    Target,
    cpu_has_int8_dot_product,
    int8_isa_note,
    register_backend,
)
from quantlens.backends.onnx_export import (
    EXPORT_PACKAGES,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    initializer_bytes,
)
from quantlens.backends.op_categories import compute_precision, float_op_types

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ONNX Runtime profile type names -> normalised dtype names.
_ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
               "uint8": "uint8", "int8": "int8", "int32": "int32", "int64": "int64", "bool": "bool"}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def session_options(threads: int, *, profile_prefix: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def make_session(path: Path, threads: int, providers: Sequence[object], *, profile_prefix: Path | None = None):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads, profile_prefix=profile_prefix),
                                providers=list(providers))


def parse_ort_profile(events: list[dict], *, skip_runs: int = 0) -> list[OpTiming]:
    """Kernel events of an ONNX Runtime profile (JSON list), merged by (op, input dtypes, provider).

    The first `skip_runs` model runs (warm-up) are left out: every kernel event that starts before
    the end of the last skipped `model_run` event is dropped.
    """
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    cutoff = runs[skip_runs - 1]["ts"] + runs[skip_runs - 1]["dur"] if 0 < skip_runs <= len(runs) else -1
    merged: dict[tuple[str, tuple[str, ...], str], list[float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if event["ts"] < cutoff:
            continue
        args = event.get("args", {})
        dtypes = tuple(_ORT_DTYPES.get(next(iter(entry)), next(iter(entry)))
                       for entry in args.get("input_type_shape", []) if entry)
        key = (str(args.get("op_name", "?")), dtypes, str(args.get("provider", "?")))
        entry = merged.setdefault(key, [0.0, 0])
        entry[0] += float(event.get("dur", 0)) / 1e6  # microseconds -> seconds
        entry[1] += 1
    return [OpTiming(op_type=op, node="", seconds=seconds, calls=int(calls), input_dtypes=dtypes,
                     implementation=provider)
            for (op, dtypes, provider), (seconds, calls) in merged.items()]


class OrtRunner(Runner):
    """An ONNX Runtime session; inputs and outputs cross as numpy arrays (zero-copy on the CPU)."""

    def __init__(self, path: Path, target: Target, providers: Sequence[object], info: RunnerInfo,
                 work_dir: Path) -> None:
        self.path = path
        self.target = target
        self.providers = list(providers)
        self.info = info
        self.work_dir = work_dir
        self.session = make_session(path, target.threads, self.providers)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().float().contiguous().numpy()  # (B, C, H, W) float32, no copy when already so
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return torch.from_numpy(logits)

    def profile_operators(self, batch: torch.Tensor, runs: int = 3) -> OperatorProfile:
        """A second session with profiling on (same model, options and providers), one warm run
        left out, then `runs` profiled runs."""
        if runs < 1:
            raise BackendError(f"profile runs must be >= 1, got {runs}")
        prefix = self.work_dir / "profiles" / self.info.backend
        prefix.parent.mkdir(parents=True, exist_ok=True)
        session = make_session(self.path, self.target.threads, self.providers, profile_prefix=prefix)
        feed = {INPUT_NAME: batch.detach().cpu().float().contiguous().numpy()}
        for _ in range(runs + 1):
            session.run([OUTPUT_NAME], feed)
        profile_path = Path(session.end_profiling())
        try:
            events = json.loads(profile_path.read_text(encoding="utf-8"))
        finally:
            profile_path.unlink()
        ops = parse_ort_profile(events, skip_runs=1)
        return OperatorProfile(backend=self.info.backend, batch_size=int(batch.shape[0]), runs=runs,
                               ops=tuple(ops), source="onnxruntime profiling")

    def close(self) -> None:
        self.session = None


def _calibration_reader(batches: Sequence[torch.Tensor]):
    """An onnxruntime CalibrationDataReader over float32 (B, C, H, W) batches, read once."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{INPUT_NAME: b.detach().cpu().float().contiguous().numpy()} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return BatchReader()


def quantize_onnx(variant: str, source: Path, target_path: Path, calibration_batches: Sequence[torch.Tensor],
              reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target_path.with_name(target_path.stem + "-preprocessed.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    if variant == "int8":
        quantize_static(str(prepared), str(target_path), _calibration_reader(calibration_batches),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                        calibrate_method=CalibrationMethod.MinMax)
    else:
        quantize_dynamic(str(prepared), str(target_path), weight_type=QuantType.QInt8, reduce_range=reduce_range)
    prepared.unlink()


def _to_fp16(source: Path, target_path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target_path))


class OrtBackend(Backend):
    """`variant`: "fp32", "fp16", "int8" (static QDQ) or "int8-dynamic"."""

    def __init__(self, name: str, variant: str, description: str) -> None:
        super().__init__(name, family="onnxruntime", precision=variant, description=description,
                         packages=EXPORT_PACKAGES)
        self.variant = variant

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        if target.is_cuda and CUDA not in available_providers():
            return False, (f"{self.name}: device {target.device!r} requested but this onnxruntime has no "
                           f"{CUDA} (providers: {', '.join(available_providers())}); install onnxruntime-gpu")
        return True, ""

    def _providers(self, target: Target) -> list[object]:
        if target.is_cuda:
            index = int(target.device.split(":")[1]) if ":" in target.device else 0
            return [(CUDA, {"device_id": index}), CPU]
        return [CPU]

    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        export = export_onnx(model, example_input, work_dir, backend=self.name)
        notes = [export.describe()]
        path = export.path
        reduce_range = not cpu_has_int8_dot_product()
        if self.variant == "fp16":
            path = work_dir / "onnx" / f"{self.name}-{export.path.stem}.onnx"
            _to_fp16(export.path, path)
        elif self.variant in ("int8", "int8-dynamic"):
            if self.variant == "int8" and not calibration_batches:
                raise BackendError(f"{self.name}: static INT8 needs at least one calibration batch")
            path = work_dir / "onnx" / f"{self.name}-{export.path.stem}.onnx"
            quantize_onnx(self.variant, export.path, path, calibration_batches, reduce_range)
            if self.variant == "int8":
                images = sum(int(b.shape[0]) for b in calibration_batches)
                notes.append(f"static QDQ: uint8 activations, per-channel int8 weights, MinMax ranges from "
                             f"{images} calibration images")
            else:
                notes.append("dynamic quantization: int8 weights, activations quantized at run time "
                             "(DynamicQuantizeLinear + ConvInteger/MatMulInteger + float rescale); "
                             "not a static INT8 model")
            if reduce_range:
                notes.append("weights quantized to 7 bits (reduce_range): without VNNI, ONNX Runtime's "
                             "AVX2 u8s8 kernels can saturate with 8-bit weights")
            isa_note = int8_isa_note()
            if isa_note:
                notes.append(isa_note)
        providers = self._providers(target)
        draft = RunnerInfo(self.name, self.precision, self.precision, target.device, "", target.threads)
        runner = OrtRunner(path, target, providers, draft, work_dir)
        used = runner.session.get_providers()[0]
        probe = runner.profile_operators(example_input[:2], runs=1)
        ran = compute_precision(probe.ops) or "fp32"
        actual = "int8-dynamic" if (self.variant == "int8-dynamic" and ran == "int8") else ran
        float_ops: tuple[str, ...] = ()
        if ran == "int8":
            float_ops = float_op_types(probe.ops)
            if float_ops:
                notes.append(f"ran in float inside the INT8 model: {', '.join(float_ops)}")
        if actual != self.precision:
            if self.variant == "fp16" and used == CPU:
                notes.insert(0, f"FP16 requested; the CPU provider has no FP16 Conv/Gemm kernels on this CPU: "
                                f"ONNX Runtime inserted casts and computed in {ran.upper()} "
                                f"(weights rounded to FP16)")
            else:
                notes.insert(0, f"{self.precision.upper()} requested; the compute operators ran in {ran.upper()}")
        runner.info = RunnerInfo(
            backend=self.name, requested_precision=self.precision, actual_precision=actual, device=target.device,
            provider=f"onnxruntime {used}", threads=target.threads, notes=tuple(notes), float_ops=float_ops,
            model_files=(str(path),), parameter_bytes=initializer_bytes(path))
        return runner


for _backend in (
    OrtBackend("ort-fp32", "fp32", "ONNX Runtime, FP32"),
    OrtBackend("ort-fp16", "fp16", "ONNX Runtime, FP16 graph (CUDA provider when present; the CPU provider "
                                   "computes it in FP32 and says so)"),
    OrtBackend("ort-int8", "int8", "ONNX Runtime, INT8 static QDQ (u8 activations, s8 per-channel weights, MinMax)"),
    OrtBackend("ort-int8-dynamic", "int8-dynamic", "ONNX Runtime, INT8 *dynamic* quantization (activations "
                                                   "quantized at run time); not static INT8"),
):
    register_backend(_backend)
