"""OpenVINO backends (optional extra `quantlens[openvino]`): FP32, and INT8 by `nncf.quantize`.

Both read the verified FP32 ONNX export. OpenVINO's default inference precision on CPUs with
AMX / AVX512-BF16 is BF16, so an "FP32" run needs `INFERENCE_PRECISION_HINT: f32`; it is set for
both backends (in the INT8 model it decides the precision of the ops left in float), and read back
from the compiled model. The model is compiled once per batch size with a static shape (the first
call at a new batch size compiles, which a warm-up absorbs), one stream, `threads` threads.

INT8 is NNCF post-training quantization (default "performance" preset: symmetric int8 weights and
activations, fast bias correction) with one calibration item per image. What ran is read from a
profiled call (per-node kernel names such as `brgconv_avx2_I8`), not assumed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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
    int8_isa_note,
    register_backend,
)
from quantlens.backends.onnx_export import EXPORT_PACKAGES, export_onnx
from quantlens.backends.op_categories import compute_precision, float_op_types

# Kernel-name suffix (exec_type "brgconv_avx2_I8") -> normalised dtype name.
_EXEC_DTYPES = {"f32": "float32", "fp32": "float32", "bf16": "bfloat16", "f16": "float16", "fp16": "float16",
                "i8": "int8", "u8": "uint8", "i32": "int32", "i64": "int64"}
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def exec_dtype(exec_type: str) -> str | None:
    """The data type in an OpenVINO kernel name ("jit_avx2_f32" -> "float32"), or None."""
    return _EXEC_DTYPES.get(exec_type.rsplit("_", 1)[-1].lower()) if "_" in exec_type else None


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs each step at INFO; keep warnings only, for the block."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class OpenVinoRunner(Runner):
    """An OpenVINO model compiled for the CPU plugin, one infer request per batch size."""

    def __init__(self, model, config: dict[str, object], info: RunnerInfo) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.model = model  # ov.Model with a dynamic batch axis
        self.config = dict(config)
        self.info = info
        self._requests: dict[tuple[int, ...], object] = {}

    def _compile(self, shape: tuple[int, ...], extra: dict[str, object] | None = None):
        static = self.model.clone()
        static.reshape({0: list(shape)})
        return self.core.compile_model(static, "CPU", {**self.config, **(extra or {})})

    def _request(self, shape: tuple[int, ...]):
        request = self._requests.get(shape)
        if request is None:
            request = self._requests[shape] = self._compile(shape).create_infer_request()
        return request

    def compiled_precision(self, shape: tuple[int, ...]) -> str:
        """The INFERENCE_PRECISION_HINT the compiled model reports ("f32", "bf16" ...)."""
        hint = self._request(shape).get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().float().contiguous().numpy()
        result = self._request(tuple(x.shape)).infer({0: x}, share_inputs=True)
        return torch.from_numpy(np.asarray(result[0]))  # infer() copies outputs unless told otherwise

    def profile_operators(self, batch: torch.Tensor, runs: int = 3) -> OperatorProfile:
        """PERF_COUNT per-node timings of `runs` calls (one warm call first), executed nodes only."""
        if runs < 1:
            raise BackendError(f"profile runs must be >= 1, got {runs}")
        x = batch.detach().cpu().float().contiguous().numpy()
        request = self._compile(tuple(x.shape), {"PERF_COUNT": True}).create_infer_request()
        request.infer({0: x})
        merged: dict[tuple[str, str], list[float]] = {}
        for _ in range(runs):
            request.infer({0: x})
            for node in request.profiling_info:
                if str(node.status).rsplit(".", 1)[-1] != "EXECUTED":
                    continue  # fused into a neighbour or optimised away
                entry = merged.setdefault((node.node_type, node.exec_type), [0.0, 0])
                entry[0] += node.real_time.total_seconds()
                entry[1] += 1
        ops = tuple(OpTiming(op_type=op_type, node="", seconds=seconds, calls=int(calls),
                             input_dtypes=tuple(d for d in (exec_dtype(exec_type),) if d),
                             implementation=exec_type)
                    for (op_type, exec_type), (seconds, calls) in merged.items())
        return OperatorProfile(backend=self.info.backend, batch_size=int(x.shape[0]), runs=runs, ops=ops,
                               source="openvino PERF_COUNT")

    def close(self) -> None:
        self._requests.clear()


class OpenVinoBackend(Backend):
    def __init__(self, name: str, precision: str, description: str) -> None:
        packages = ("openvino", *EXPORT_PACKAGES) + (("nncf",) if precision == "int8" else ())
        super().__init__(name, family="openvino", precision=precision, description=description, packages=packages)

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        if target.device != "cpu":
            return False, f"{self.name}: quantlens runs OpenVINO on its CPU plugin only (device {target.device!r})"
        return True, ""

    def _quantize(self, model, calibration_batches: list[torch.Tensor]):
        import nncf

        # One item per image: NNCF counts `subset_size` in items, and some of its statistics assume batch 1.
        items = [b[i:i + 1].detach().cpu().float().numpy() for b in calibration_batches for i in range(b.shape[0])]
        with _quiet_nncf():
            return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))

    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        import openvino as ov

        export = export_onnx(model, example_input, work_dir, backend=self.name)
        ov_model = ov.Core().read_model(str(export.path))
        notes = [export.describe()]
        if self.precision == "int8":
            if not calibration_batches:
                raise BackendError(f"{self.name}: NNCF INT8 needs at least one calibration batch")
            ov_model = self._quantize(ov_model, calibration_batches)
            images = sum(int(b.shape[0]) for b in calibration_batches)
            notes.append(f"nncf.quantize (performance preset, fast bias correction) on {images} calibration images")
        xml = work_dir / "openvino" / f"{self.name}-{export.path.stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": target.threads,
                  "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        draft = RunnerInfo(self.name, self.precision, self.precision, "cpu", "", target.threads)
        runner = OpenVinoRunner(ov_model, config, draft)
        probe_batch = example_input[:2]
        hint = runner.compiled_precision(tuple(probe_batch.shape))
        hint_name = _PRECISION_NAMES.get(hint, hint)
        probe = runner.profile_operators(probe_batch, runs=1)
        ran = compute_precision(probe.ops) or hint_name
        float_ops: tuple[str, ...] = ()
        notes.append(f"INFERENCE_PRECISION_HINT f32 set; the compiled model reports {hint}")
        if ran == "int8":
            float_ops = float_op_types(probe.ops)
            if float_ops:
                notes.append(f"ran in float inside the INT8 model: {', '.join(float_ops)}")
            isa_note = int8_isa_note()
            if isa_note:
                notes.append(isa_note)
        if ran != self.precision:
            notes.insert(0, f"{self.precision.upper()} requested; the compute operators ran in {ran.upper()}")
        notes.append("compiled once per batch size with a static shape")
        runner.info = RunnerInfo(
            backend=self.name, requested_precision=self.precision, actual_precision=ran, device="cpu",
            provider=f"openvino {ov.__version__} CPU", threads=target.threads, notes=tuple(notes),
            float_ops=float_ops, model_files=(str(xml),),  # the .bin beside it is counted with it
            parameter_bytes=xml.with_suffix(".bin").stat().st_size)
        return runner


for _backend in (
    OpenVinoBackend("openvino-fp32", "fp32", "OpenVINO CPU, FP32 (INFERENCE_PRECISION_HINT f32)"),
    OpenVinoBackend("openvino-int8", "int8", "OpenVINO CPU, INT8 by nncf.quantize"),
):
    register_backend(_backend)
