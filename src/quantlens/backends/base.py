"""The backend protocol: `Backend.prepare(...) -> Runner`, `Runner.run(batch) -> logits`.

A backend is one registered object that knows whether it can run here (`available()`), and how to
turn an FP32 `nn.Module` into something that runs real inference (`prepare`). What it returns is a
`Runner`: `run(batch)` takes a float32 (B, C, H, W) tensor and returns float32 (B, classes) logits
on the CPU side of the caller, and `info` says what *actually* ran: the precision requested and
the precision the kernels really used, the device, the provider, the threads, and notes such as
"FP16 requested; the CPU provider has no FP16 kernels; ran FP32". A fallback is never silent.

Every name lives in one registry, `BACKENDS`; an unknown name gets the registry's one-line
message with the known names. Optional packages are imported only inside `prepare`, so listing
or validating backends never needs them; a missing one raises `MissingPackageError`, which names
the package and the quantlens extra that installs it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quantlens.atomic import atomic_path
from quantlens.environment import isa_flags, usable_cores
from quantlens.errors import QuantlensError
from quantlens.registry import Registry

# Precision vocabulary, for both what was requested and what ran.
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int8-dynamic")

# Import name -> the quantlens extra (pyproject optional-dependencies) that installs it.
PACKAGE_EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
                  "openvino": "openvino", "nncf": "openvino"}


class BackendError(QuantlensError):
    """A backend cannot prepare or run this model (the message says why, in one line)."""


class MissingPackageError(BackendError):
    """A backend needs a Python package that is not installed; the message names the install command."""


class BackendUnavailableError(BackendError):
    """A backend cannot run on this machine (no GPU, no compiler ...); the message says what is missing."""


class ForwardSplitError(BackendError):
    """A runner cannot hand out its forward as feature extractor + classifier head (the message says why)."""


def check_integer_kernel_spec(spec, where: str, form: str, quantize_op: str) -> None:
    """BackendError unless a tensor's spec (nn.spec.TensorSpec) has a form integer kernels run: no
    per-block scales, round-to-nearest-even. `form`: what the runtime lacks ("ONNX Runtime CPU QDQ
    form"); `quantize_op`: what rounds there ("QuantizeLinear")."""
    if spec.mode == "block":
        raise BackendError(f"{where}: per-block scales ({spec.describe()}) have no {form}")
    if spec.rounding != "nearest_even":
        raise BackendError(f"{where}: {spec.rounding} rounding is simulation only ({quantize_op} rounds to "
                           "nearest even)")


def install_hint(package: str) -> str:
    extra = PACKAGE_EXTRAS.get(package)
    return f"pip install 'quantlens[{extra}]'" if extra else f"pip install {package}"


def package_installed(package: str) -> bool:
    """True when `package` can be imported. A `None` entry in sys.modules (the standard way to
    block an import, used by tests to simulate a missing package) counts as not installed."""
    if package in sys.modules:
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


def missing_package_message(backend: str, package: str) -> str:
    return (f"backend {backend!r} needs the Python package {package!r}, which is not installed; "
            f"install it with: {install_hint(package)}")


@dataclass(frozen=True)
class Target:
    """Where a runner runs: `device` ("cpu" or "cuda[:i]") and `threads` (intra-op threads).

    Torch's thread count is process-wide, so torch runners cannot hold it: whoever times them
    sets it around the run with `torch_threads(target.threads)`. ONNX Runtime and OpenVINO take
    it when their sessions are built.
    """

    device: str = "cpu"
    threads: int = field(default_factory=usable_cores)

    def __post_init__(self) -> None:
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise BackendError(f"device must be 'cpu' or 'cuda[:index]', got {self.device!r}")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise BackendError(f"threads must be an integer >= 1, got {self.threads!r}")

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count for the block and restore the previous one after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner really runs with. `actual_precision` is what the heavy kernels (convolutions,
    matrix products) computed in, determined by inspecting the prepared model or a profiled run,
    not copied from the request; `float_ops` lists operator types that run in floating point
    inside a lower-precision model."""

    backend: str
    requested_precision: str
    actual_precision: str
    device: str
    provider: str
    threads: int
    notes: tuple[str, ...] = ()
    float_ops: tuple[str, ...] = ()
    model_files: tuple[str, ...] = ()
    parameter_bytes: int = 0  # bytes of the weights as the runtime holds them

    @property
    def fell_back(self) -> bool:
        """True when the precision that ran is not the one requested."""
        return self.actual_precision != self.requested_precision

    @property
    def precision_label(self) -> str:
        """"int8" when it ran as requested, "fp16->fp32" when it did not."""
        if self.fell_back:
            return f"{self.requested_precision}->{self.actual_precision}"
        return self.actual_precision

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "requested_precision": self.requested_precision,
                "actual_precision": self.actual_precision, "fell_back": self.fell_back,
                "device": self.device, "provider": self.provider, "threads": self.threads,
                "notes": list(self.notes), "float_ops": list(self.float_ops),
                "model_files": list(self.model_files), "parameter_bytes": self.parameter_bytes}


@dataclass(frozen=True)
class OpTiming:
    """One profiled operator execution (or several, aggregated by the runtime's profiler).

    `input_dtypes` are normalised names ("float32", "float16", "bfloat16", "uint8", "int8",
    "int64" ...) of the tensor inputs; `implementation` is the provider or kernel name.
    """

    op_type: str
    node: str
    seconds: float  # total over the profiled runs
    calls: int
    input_dtypes: tuple[str, ...]
    implementation: str


@dataclass(frozen=True)
class OperatorProfile:
    """Raw per-operator timings of `runs` profiled calls at `batch_size`."""

    backend: str
    batch_size: int
    runs: int
    ops: tuple[OpTiming, ...]
    source: str  # which profiler produced it


@dataclass(frozen=True)
class ForwardParts:
    """A runner's forward as two calls, with the runner's own device, autocast and memory format:
    head(features(x)) computes what run(x) does, so the two can be timed as separate stages."""

    features: Callable[[torch.Tensor], torch.Tensor]  # float32 (B, C, H, W) -> (B, F), as the model computes it
    head: Callable[[torch.Tensor], torch.Tensor]  # (B, F) -> float32 (B, classes)
    description: str  # where the cut is, e.g. "cut at the input of fc (64 -> 10)"


class Runner(ABC):
    """A prepared model: `run(batch)` -> float32 logits, `info` -> what really runs.

    Optional capability: a runner that can time its feature extractor and its classifier head
    apart says so with `splits_forward` and hands them out with `forward_parts`; the pipeline's
    stage timer asks it, instead of knowing runner classes.
    """

    info: RunnerInfo

    @property
    def splits_forward(self) -> bool:
        """True when `forward_parts` can split this runner's forward (eager torch modules)."""
        return False

    def forward_parts(self, example_input: torch.Tensor) -> ForwardParts:
        """The forward as features + head, checked on `example_input` (B, C, H, W); raises
        ForwardSplitError with the reason when it cannot be split."""
        raise ForwardSplitError(f"{self.info.backend} runs its forward as one call (not an eager torch module)")

    @abstractmethod
    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """batch: float32 (B, C, H, W) -> float32 (B, classes), on the CPU unless the runner is CUDA torch."""

    def synchronize(self) -> None:  # noqa: B027  (an optional hook, a no-op by default)
        """Wait for queued device work (a no-op for synchronous runtimes)."""

    def profile_operators(self, batch: torch.Tensor, runs: int = 3) -> OperatorProfile:
        """Per-operator timings of `runs` calls on `batch` (after one unprofiled warm call)."""
        raise BackendError(f"backend {self.info.backend!r} has no per-operator profiler")

    def close(self) -> None:  # noqa: B027  (an optional hook, a no-op by default)
        """Release sessions and compiled models early (garbage collection also does it)."""


class Backend(ABC):
    """One way of running a model. Subclasses pass their name, family, precision and packages to
    __init__, refuse devices they cannot use in `_hardware_available`, and build runners in `_prepare`."""

    def __init__(self, name: str, *, family: str, precision: str, description: str,
                 packages: Sequence[str] = ()) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.name = name
        self.family = family
        self.precision = precision
        self.description = description
        self.packages = tuple(packages)

    def available(self, target: Target | None = None) -> tuple[bool, str]:
        """(True, "") when this backend can run here, else (False, why and how to fix it)."""
        for package in self.packages:
            if not package_installed(package):
                return False, missing_package_message(self.name, package)
        return self._hardware_available(target or Target())

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        """Subclasses refuse devices or machines they cannot use."""
        return True, ""

    def require_available(self, target: Target | None = None) -> None:
        """Raise MissingPackageError / BackendUnavailableError with the reason when unavailable."""
        for package in self.packages:
            if not package_installed(package):
                raise MissingPackageError(missing_package_message(self.name, package))
        ok, reason = self._hardware_available(target or Target())
        if not ok:
            raise BackendUnavailableError(reason)

    def prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: Sequence[torch.Tensor],
                work_dir: str | Path, target: Target | None = None) -> Runner:
        """Build a runner from an FP32 model (left unchanged). `example_input` is a float32
        (B, C, H, W) batch (its C, H, W fix the input shape; any batch size runs later);
        `calibration_batches` feed static quantizers; files go under `work_dir`."""
        target = target or Target()
        self.require_available(target)
        if not isinstance(model, nn.Module):
            raise BackendError(f"prepare needs a torch nn.Module, got {type(model).__name__}")
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
            raise BackendError(f"example_input must be a (B, C, H, W) tensor, got "
                               f"{getattr(example_input, 'shape', type(example_input).__name__)}")
        batches = list(calibration_batches)
        for batch in batches:
            if not isinstance(batch, torch.Tensor) or tuple(batch.shape[1:]) != tuple(example_input.shape[1:]):
                raise BackendError(f"calibration batches must be tensors shaped (B, "
                                   f"{', '.join(map(str, example_input.shape[1:]))}), got "
                                   f"{getattr(batch, 'shape', type(batch).__name__)}")
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        return self._prepare(model, example_input.detach().float().cpu(), batches, work_dir, target)

    @abstractmethod
    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        """`prepare` after the common checks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


BACKENDS: Registry[Backend] = Registry("backend")


def register_backend(backend: Backend) -> Backend:
    return BACKENDS.add(backend.name, backend)


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; an UnknownNameError listing the known names otherwise."""
    return BACKENDS.get(name)


def state_dict_bytes(module: nn.Module) -> int:
    """Bytes of a module's state_dict tensors, quantized weights included (each storage once)."""
    seen: set[int] = set()
    total = 0
    for value in module.state_dict().values():
        tensors = value if isinstance(value, (tuple, list)) else (value,)
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def save_state_dict(module: nn.Module, path: Path) -> Path:
    """torch.save of the state_dict (packed quantized weights included), for its size on disk."""
    with atomic_path(path) as tmp:
        torch.save(module.state_dict(), tmp)
    return path


_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_int8_dot_product() -> bool:
    """True when the CPU has VNNI or AMX-INT8: a single instruction for u8 x s8 dot products with
    32-bit accumulation. Without them (plain AVX2), int8 kernels use vpmaddubsw, which sums pairs
    of u8 x s8 products into saturating int16 lanes."""
    flags = isa_flags()
    return any(flags.get(flag, False) for flag in _INT8_DOT_FLAGS)


def int8_isa_note() -> str | None:
    """A note for INT8 runners on a CPU without VNNI/AMX-INT8, else None."""
    if cpu_has_int8_dot_product():
        return None
    return ("this CPU has no VNNI/AMX-INT8: int8 dot products use AVX2 vpmaddubsw pairs, so INT8 has "
            "a smaller edge over FP32 than on VNNI CPUs")
