"""TensorRT backends: FP16 and INT8 engines, built through ONNX Runtime's TensorRT execution provider.

They need a CUDA GPU, NVIDIA's `tensorrt` package and an onnxruntime build that has the
`TensorrtExecutionProvider` (onnxruntime-gpu). Where any of the three is missing, `available()`
says which, and a benchmark skips them with that reason.

* `tensorrt-fp16` hands TensorRT the FP32 export with FP16 kernels allowed.
* `tensorrt-int8` hands it the static QDQ model of `ort-int8` (explicit quantization: the scales
  come from the Q/DQ nodes, no TensorRT calibration cache is needed).

Engines are cached in the work directory. Inputs and outputs cross as host numpy arrays, so the
timings include the host <-> device copies, as a plain `session.run` deployment would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from quantlens.backends.base import Backend, Runner, RunnerInfo, Target, package_installed, register_backend
from quantlens.backends.onnx_export import EXPORT_PACKAGES, export_onnx
from quantlens.backends.onnxruntime import CPU, CUDA, OrtRunner, available_providers, quantize_onnx

TENSORRT = "TensorrtExecutionProvider"


class TensorRtBackend(Backend):
    def __init__(self, name: str, precision: str, description: str) -> None:
        super().__init__(name, family="tensorrt", precision=precision, description=description,
                         packages=EXPORT_PACKAGES)

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, f"{self.name}: no CUDA GPU visible (torch.cuda.is_available() is False); TensorRT needs one"
        if not target.is_cuda:
            return False, f"{self.name}: TensorRT runs on a CUDA device; the benchmark targets {target.device!r}"
        if not package_installed("tensorrt"):
            return False, f"{self.name}: NVIDIA's 'tensorrt' package is not installed (pip install tensorrt)"
        providers = available_providers()
        if TENSORRT not in providers:
            return False, (f"{self.name}: this onnxruntime has no {TENSORRT} (providers: {', '.join(providers)}); "
                           f"install onnxruntime-gpu")
        return True, ""

    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        export = export_onnx(model, example_input, work_dir, backend=self.name)
        path = export.path
        notes = [export.describe(),
                 "engine built by ONNX Runtime's TensorRT provider; host<->device copies are inside the timed call"]
        if self.precision == "int8":
            path = work_dir / "onnx" / f"{self.name}-{export.path.stem}.onnx"
            quantize_onnx("int8", export.path, path, calibration_batches, reduce_range=False)
            notes.append("explicit INT8 from the static QDQ model (u8 activations, s8 per-channel weights, MinMax)")
        index = int(target.device.split(":")[1]) if ":" in target.device else 0
        cache = work_dir / "tensorrt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        options = {"device_id": index, "trt_fp16_enable": True, "trt_int8_enable": self.precision == "int8",
                   "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
        providers = [(TENSORRT, options), (CUDA, {"device_id": index}), CPU]
        draft = RunnerInfo(self.name, self.precision, self.precision, target.device, "", target.threads)
        runner = OrtRunner(path, target, providers, draft, work_dir)
        used = runner.session.get_providers()[0]
        runner.run(example_input[:2])  # builds the engine now, not inside a timed run
        actual = self.precision if used == TENSORRT else "fp32"
        if used != TENSORRT:
            notes.insert(0, f"{self.precision.upper()} requested but ONNX Runtime fell back to {used}: ran FP32")
        runner.info = RunnerInfo(
            backend=self.name, requested_precision=self.precision, actual_precision=actual, device=target.device,
            provider=f"onnxruntime {used}", threads=target.threads, notes=tuple(notes), model_files=(str(path),))
        return runner


for _backend in (
    TensorRtBackend("tensorrt-fp16", "fp16", "TensorRT FP16 (ONNX Runtime TensorRT provider; CUDA GPU)"),
    TensorRtBackend("tensorrt-int8", "int8", "TensorRT INT8 from the QDQ model (ONNX Runtime TensorRT provider; "
                                             "CUDA GPU)"),
):
    register_backend(_backend)
