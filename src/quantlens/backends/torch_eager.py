"""PyTorch eager backends: FP32, FP32 channels-last, BF16 / FP16 autocast, and torch.compile.

Precision is checked, not assumed: after preparing, the runner runs a small batch and reads the
dtype autocast actually produced. On a CPU without native BF16 (AVX512-BF16 / AMX-BF16) or FP16
(AVX512-FP16 / AMX-FP16) arithmetic, autocast still computes in that format, by converting in and
out of FP32 around every kernel: the result is genuinely BF16/FP16 but slower than FP32, and the
runner says so. Autocast keeps the weights in FP32 and casts them on every call.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from quantlens.backends.base import (
    Backend,
    BackendError,
    ForwardParts,
    OperatorProfile,
    OpTiming,
    Runner,
    RunnerInfo,
    Target,
    register_backend,
    save_state_dict,
    state_dict_bytes,
)
from quantlens.environment import isa_flags
from quantlens.errors import describe

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# ISA flags that give a CPU native arithmetic in each format (oneDNN uses them when present).
_NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}

# Profiler dtype spellings -> normalised names ("" and Scalar arguments are not tensors).
_TORCH_DTYPES = {
    "float": "float32", "double": "float64", "c10::Half": "float16", "c10::BFloat16": "bfloat16",
    "c10::quint8": "uint8", "c10::qint8": "int8", "c10::qint32": "int32", "unsigned char": "uint8",
    "signed char": "int8", "long int": "int64", "int": "int32", "bool": "bool",
}
_NOT_TENSORS = {"", "Scalar", "ScalarList", "TensorList", "GenericList", "None"}


def normalise_torch_dtypes(dtypes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_TORCH_DTYPES.get(d, d) for d in dtypes if d not in _NOT_TENSORS)


def torch_operator_profile(call: Callable[[torch.Tensor], object], batch: torch.Tensor, runs: int,
                           backend: str) -> OperatorProfile:
    """Profile `runs` calls with torch.profiler (CPU activity, input dtypes recorded).

    Only top-level operators are kept (an aten::conv2d, not the aten::mkldnn_convolution inside
    it), so their inclusive times add up to the call without double counting; rows are merged by
    (operator, input dtypes).
    """
    from torch.profiler import ProfilerActivity, profile

    if runs < 1:
        raise BackendError(f"profile runs must be >= 1, got {runs}")
    call(batch)  # warm: lazy initialisation and compilation stay out of the profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(runs):
            call(batch)
    merged: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        key = (event.name, normalise_torch_dtypes(list(event.input_dtypes or ())))
        entry = merged.setdefault(key, [0.0, 0])
        entry[0] += event.cpu_time_total / 1e6  # profiler times are microseconds
        entry[1] += 1
    ops = tuple(OpTiming(op_type=name, node="", seconds=seconds, calls=int(calls), input_dtypes=dtypes,
                         implementation="torch CPU")
                for (name, dtypes), (seconds, calls) in merged.items())
    return OperatorProfile(backend=backend, batch_size=int(batch.shape[0]), runs=runs, ops=ops,
                           source="torch.profiler")


class TorchEagerRunner(Runner):
    """An nn.Module run under inference_mode, optionally with autocast and channels-last input."""

    def __init__(self, module: nn.Module, info: RunnerInfo, *, device: torch.device,
                 autocast_dtype: torch.dtype | None, channels_last: bool, splittable: bool) -> None:
        self.module = module
        self.info = info
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.splittable = splittable  # False for compiled modules: their graph is not the eager one

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def run_raw(self, batch: torch.Tensor) -> torch.Tensor:
        """The module's output as it comes out (bf16/fp16 under autocast)."""
        x = batch if batch.device == self.device else batch.to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a real copy: part of the cost
        with torch.inference_mode(), self._autocast():
            return self.module(x)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        return self.run_raw(batch).float()

    def derive(self, module: nn.Module) -> TorchEagerRunner:
        """A runner with the same device, autocast and memory format for another module (used to
        time a model's feature extractor and classifier head as separate stages)."""
        return TorchEagerRunner(module, self.info, device=self.device, autocast_dtype=self.autocast_dtype,
                                channels_last=self.channels_last, splittable=False)

    @property
    def splits_forward(self) -> bool:
        return self.splittable

    def forward_parts(self, example_input: torch.Tensor) -> ForwardParts:
        """Features (raw output: bf16/fp16 under autocast, as the model hands it on) and head (float32
        logits), both run like this runner; cut by `torch_split.split_at_last_linear`."""
        if not self.splittable:
            return super().forward_parts(example_input)
        from quantlens.backends.torch_split import split_at_last_linear  # torch.fx, only when splitting

        features, head, description = split_at_last_linear(self.module, example_input[:2].to(self.device))
        return ForwardParts(self.derive(features).run_raw, self.derive(head).run, description)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def profile_operators(self, batch: torch.Tensor, runs: int = 3) -> OperatorProfile:
        if self.device.type != "cpu":
            raise BackendError(f"{self.info.backend}: the operator profile covers CPU runs only")
        return torch_operator_profile(self.run, batch, runs, self.info.backend)


def cpu_native(precision: str) -> bool:
    flags = isa_flags()
    return any(flags.get(flag, False) for flag in _NATIVE_CPU_FLAGS[precision])


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU ($CXX, else g++ or clang++ on PATH)."""
    for candidate in (os.environ.get("CXX"), "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


@contextlib.contextmanager
def _compile_errors(backend: str) -> Iterator[None]:
    """Turn a failed torch.compile into one BackendError line (the rest of the benchmark goes on).
    Inductor imports torch.utils.mkldnn, whose import warns that torch.jit.script_method is
    deprecated: torch's business, not the model's, so it is not shown."""
    from torch._dynamo.exc import TorchDynamoException

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)
            yield
    except TorchDynamoException as error:
        raise BackendError(f"{backend}: torch.compile failed: {describe(error)}") from error


class TorchEagerBackend(Backend):
    """`precision` fp32 / bf16 / fp16 (autocast), `channels_last`, `compile` (inductor, FP32)."""

    def __init__(self, name: str, *, precision: str, channels_last: bool = False, compile: bool = False,
                 description: str) -> None:
        super().__init__(name, family="torch", precision=precision, description=description)
        self.channels_last = channels_last
        self.compile = compile

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        if target.is_cuda and not torch.cuda.is_available():
            return False, f"{self.name}: device {target.device!r} requested but torch sees no CUDA GPU"
        if target.is_cuda and self.precision == "bf16" and not torch.cuda.is_bf16_supported():
            return False, f"{self.name}: this GPU does not support bf16"
        if self.compile and target.device == "cpu" and cxx_compiler() is None:
            return False, (f"{self.name}: torch.compile (inductor) on the CPU needs a C++ compiler; "
                           f"none found ($CXX, g++, clang++)")
        return True, ""

    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        device = torch.device(target.device)
        module = copy.deepcopy(model).eval().to(device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        weights_file = save_state_dict(module, work_dir / f"{self.name}.pt")
        parameter_bytes = state_dict_bytes(module)
        notes: list[str] = []
        provider = f"torch eager ({device.type})"
        if self.channels_last:
            notes.append("channels-last (NHWC) weights; each input batch is converted to channels-last "
                         "inside the timed call")
        if self.compile:
            # Freezing constant-folds the weights and lets inductor prepack them for oneDNN; passed
            # per compile through `options`, so torch._inductor.config is never changed globally.
            with _compile_errors(self.name):
                module = torch.compile(module, dynamic=False, options={"freezing": True})
            provider = f"torch.compile inductor ({device.type}), freezing"
            notes.append("compiled per batch size (dynamic=False): the first call at a new batch size "
                         "compiles, which the warm-up absorbs")
        autocast_dtype = _AUTOCAST_DTYPES.get(self.precision)
        runner = TorchEagerRunner(module, RunnerInfo(self.name, self.precision, self.precision, str(device), provider,
                                                     target.threads),
                                  device=device, autocast_dtype=autocast_dtype, channels_last=self.channels_last,
                                  splittable=not self.compile)
        with _compile_errors(self.name) if self.compile else contextlib.nullcontext():
            produced = runner.run_raw(example_input[:2].to(device)).dtype
        actual = _DTYPE_PRECISION.get(produced, str(produced))
        if actual != self.precision:
            notes.append(f"{self.precision.upper()} requested but autocast produced {produced}: ran {actual.upper()}")
        elif self.precision in _NATIVE_CPU_FLAGS and device.type == "cpu" and not cpu_native(self.precision):
            flags = "/".join(flag.upper() for flag in _NATIVE_CPU_FLAGS[self.precision])
            notes.append(f"{self.precision} autocast on a CPU without {flags}: emulated by conversions, "
                         f"expect it to be slower than FP32")
        if autocast_dtype is not None:
            notes.append(f"autocast: weights stay FP32 and are cast to {self.precision} on every call")
        runner.info = RunnerInfo(
            backend=self.name, requested_precision=self.precision, actual_precision=actual, device=str(device),
            provider=provider, threads=target.threads, notes=tuple(notes),
            model_files=(str(weights_file),), parameter_bytes=parameter_bytes)
        return runner


for _backend in (
    TorchEagerBackend("torch-fp32", precision="fp32", description="PyTorch eager, FP32"),
    TorchEagerBackend("torch-fp32-cl", precision="fp32", channels_last=True,
                      description="PyTorch eager, FP32, channels-last memory format"),
    TorchEagerBackend("torch-bf16", precision="bf16", description="PyTorch eager, BF16 autocast"),
    TorchEagerBackend("torch-fp16", precision="fp16", description="PyTorch eager, FP16 autocast"),
    TorchEagerBackend("torch-compile", precision="fp32", compile=True,
                      description="torch.compile (inductor, freezing), FP32"),
):
    register_backend(_backend)
