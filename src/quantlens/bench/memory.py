"""Memory and size figures: process RSS (lifetime peak and peak during one call), CUDA peak
memory, model file sizes, and the bytes held by an nn.Module's parameters and buffers.

How `measure_peak_rss` finds the peak of one call, and its limits:
  * A sampling thread reads the current RSS every `interval_s` (1 ms) while the call runs.
    It misses spikes shorter than the interval, and it needs the GIL to run: a call that holds
    the GIL in pure Python is sampled only at the interpreter's switch interval (5 ms). Torch and
    numpy kernels release the GIL, so model inference is sampled as asked.
  * The kernel also keeps the process's lifetime RSS high-water mark (`getrusage` ru_maxrss).
    When the call raises it, the new high-water mark is the call's exact peak, and it is used.
    When the process peaked higher earlier, only the sampled figure is available.
  * The kernel's mark could be reset before the call (Linux: write "5" to /proc/self/clear_refs)
    for an exact figure every time, but that changes process-wide state that other code may read,
    so this module does not do it. For an exact, isolated figure, run the workload in a fresh
    subprocess and read that process's ru_maxrss.
  * RSS counts pages touched, not bytes allocated: freed memory that the allocator keeps, shared
    libraries loaded during the call, and memory of other threads all show up in it.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psutil

from quantlens.errors import QuantlensError


def current_rss_bytes() -> int:
    """Resident set size of this process now, in bytes."""
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Highest RSS this process has had since it started, in bytes (ru_maxrss: KiB on Linux,
    bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True)
class PeakRss:
    """RSS around one call, in bytes. `exact` is True when the call set a new lifetime
    high-water mark (then `peak_bytes` is the kernel's figure), False when only sampled."""

    baseline_bytes: int  # RSS just before the call
    peak_bytes: int  # highest RSS seen during the call
    final_bytes: int  # RSS just after the call
    exact: bool
    samples_taken: int
    interval_s: float

    @property
    def increase_bytes(self) -> int:
        """Peak RSS during the call minus RSS before it (never negative)."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline_bytes": self.baseline_bytes, "peak_bytes": self.peak_bytes,
                "final_bytes": self.final_bytes, "increase_bytes": self.increase_bytes, "exact": self.exact,
                "samples_taken": self.samples_taken, "interval_s": self.interval_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeakRss:
        """Inverse of `to_dict` ("increase_bytes" is derived, and ignored)."""
        try:
            return cls(baseline_bytes=int(data["baseline_bytes"]), peak_bytes=int(data["peak_bytes"]),
                       final_bytes=int(data["final_bytes"]), exact=bool(data["exact"]),
                       samples_taken=int(data["samples_taken"]), interval_s=float(data["interval_s"]))
        except (KeyError, TypeError, ValueError) as error:
            raise QuantlensError(f"not a peak-RSS figure: {error}") from None


def _rss_reader(process: psutil.Process) -> Callable[[], int]:
    def read() -> int:
        return int(process.memory_info().rss)
    return read


def measure_peak_rss(fn: Callable[[], object], *, interval_s: float = 0.001,
                     read_rss: Callable[[], int] | None = None,
                     read_peak: Callable[[], int] = peak_rss_bytes) -> tuple[object, PeakRss]:
    """Call `fn()` once; return its result and the RSS figures around it (see module docstring).

    `read_rss` gives the RSS now, in bytes (read before and after the call, and by the sampling
    thread); by default this process's, through one psutil.Process kept for the call (~20 us a
    read instead of ~70 us for a fresh one). `read_peak` gives the lifetime high-water mark (read
    before and after). A test passes scripted readers for both. Exceptions from `fn` propagate
    after the sampling thread has stopped.
    """
    if not callable(fn):
        raise QuantlensError(f"fn must be callable, got {type(fn).__name__}")
    if not 1e-5 <= interval_s <= 1.0:
        raise QuantlensError(f"interval_s must be in [1e-5, 1] seconds, got {interval_s}")
    if read_rss is None:
        read_rss = _rss_reader(psutil.Process())
    stop = threading.Event()
    sampled = {"peak": 0, "count": 0}

    def sample_until_stopped() -> None:
        while True:
            rss = int(read_rss())
            sampled["count"] += 1
            if rss > sampled["peak"]:
                sampled["peak"] = rss
            if stop.wait(interval_s):
                return

    hwm_before = read_peak()
    baseline = read_rss()
    sampler = threading.Thread(target=sample_until_stopped, name="quantlens-rss-sampler", daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        stop.set()
        sampler.join()
    final = read_rss()
    hwm_after = read_peak()
    exact = hwm_after > hwm_before
    peak = hwm_after if exact else max(sampled["peak"], baseline, final)
    return result, PeakRss(baseline_bytes=baseline, peak_bytes=peak, final_bytes=final, exact=exact,
                           samples_taken=sampled["count"], interval_s=interval_s)


@dataclass(frozen=True)
class CudaPeak:
    """Peak CUDA memory of one call, in bytes, as torch's caching allocator counts it (tensors
    allocated / memory reserved); memory outside the allocator (cuDNN workspaces from other
    libraries, the CUDA context itself) is not included."""

    device: str
    baseline_allocated_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int

    @property
    def increase_bytes(self) -> int:
        return max(0, self.peak_allocated_bytes - self.baseline_allocated_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "baseline_allocated_bytes": self.baseline_allocated_bytes,
                "peak_allocated_bytes": self.peak_allocated_bytes, "peak_reserved_bytes": self.peak_reserved_bytes,
                "increase_bytes": self.increase_bytes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CudaPeak:
        """Inverse of `to_dict` ("increase_bytes" is derived, and ignored)."""
        try:
            return cls(device=str(data["device"]), baseline_allocated_bytes=int(data["baseline_allocated_bytes"]),
                       peak_allocated_bytes=int(data["peak_allocated_bytes"]),
                       peak_reserved_bytes=int(data["peak_reserved_bytes"]))
        except (KeyError, TypeError, ValueError) as error:
            raise QuantlensError(f"not a CUDA peak-memory figure: {error}") from None


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch on first use)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def measure_peak_cuda_memory(fn: Callable[[], object], device: Any = None) -> tuple[object, CudaPeak | None]:
    """Call `fn()` once; return its result and its peak CUDA memory, or None in place of the
    figure when CUDA is not available (the call still runs, so callers need no branch).

    Resets torch's peak-memory counters of `device` (the current one by default): they are
    statistics that only peak-memory measurements read.
    """
    if not callable(fn):
        raise QuantlensError(f"fn must be callable, got {type(fn).__name__}")
    if not cuda_available():
        return fn(), None
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, CudaPeak(device=str(device), baseline_allocated_bytes=int(baseline),
                            peak_allocated_bytes=int(torch.cuda.max_memory_allocated(device)),
                            peak_reserved_bytes=int(torch.cuda.max_memory_reserved(device)))


@dataclass(frozen=True)
class FileSizes:
    """Bytes on disk of a model and the files that belong to it (path -> bytes)."""

    files: Mapping[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _onnx_graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph: initializers, sparse initializers, tensor-valued
    node attributes, and those of subgraphs (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _onnx_graph_tensors(subgraph)


def _onnx_external_data(path: Path) -> list[Path]:
    """Files the ONNX model at `path` stores tensors in, read from the model itself when the
    onnx package is installed, else the exporter's convention `<model>.onnx.data`."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        conventional = path.with_name(path.name + ".data")
        return [conventional] if conventional.exists() else []
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as error:
        raise QuantlensError(f"cannot read ONNX model {path}: {error}") from None
    locations: list[str] = []
    for tensor in _onnx_graph_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in locations:
                    locations.append(entry.value)
    return [path.parent / location for location in locations]


def model_file_sizes(path: str | os.PathLike[str]) -> FileSizes:
    """Size of a model file with its companions: an ONNX model's external data file(s)
    (`model.onnx` + `model.onnx.data`), an OpenVINO IR's weights (`model.xml` + `model.bin`)."""
    path = Path(path)
    if not path.is_file():
        raise QuantlensError(f"model file {path} does not exist")
    companions: list[Path] = []
    if path.suffix == ".onnx":
        companions = _onnx_external_data(path)
    elif path.suffix == ".xml" and path.with_suffix(".bin").exists():
        companions = [path.with_suffix(".bin")]
    files = {os.fspath(path): path.stat().st_size}
    for companion in companions:
        if not companion.is_file():
            raise QuantlensError(f"{path} refers to external data {companion}, which does not exist")
        files[os.fspath(companion)] = companion.stat().st_size
    return FileSizes(files=MappingProxyType(files))


@dataclass(frozen=True)
class ModuleBytes:
    """Bytes held by a module's parameters and buffers (each tensor counted once)."""

    parameter_bytes: int
    buffer_bytes: int
    parameter_count: int  # number of parameter elements

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.buffer_bytes


def module_bytes(module: Any) -> ModuleBytes:
    """numel x element size over `module.parameters()` and `module.buffers()`.

    Tensors shared between submodules (tied weights) are counted once. Weights that are neither
    parameters nor buffers, such as the packed weights of torch.ao quantized modules, are not
    seen: measure those through the saved file (`model_file_sizes`) instead.
    """
    try:
        parameters = list(module.parameters())
        buffers = list(module.buffers())
    except AttributeError:
        raise QuantlensError(f"module_bytes needs a torch nn.Module, got {type(module).__name__}") from None
    seen: set[int] = set()

    def nbytes(tensors: list[Any]) -> int:
        total = 0
        for tensor in tensors:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
        return total

    parameter_bytes = nbytes(parameters)
    return ModuleBytes(parameter_bytes=parameter_bytes, buffer_bytes=nbytes(buffers),
                       parameter_count=sum(p.numel() for p in parameters))
