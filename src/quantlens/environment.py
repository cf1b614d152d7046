"""What machine and software produced a result: recorded with every run and benchmark.

A number without its environment cannot be compared with another one; `machine_fingerprint`
identifies the hardware (not the host name, which changes between containers), so that records
from different machines can be told apart.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

# ISA extensions that decide which low-precision kernels a CPU can run fast.
_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
)
_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "scikit-learn", "scipy",
             "ml_dtypes", "torchao", "timm", "torchvision", "tensorrt", "quantlens")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def isa_flags() -> dict[str, bool]:
    """Which of the ISA extensions relevant to quantized kernels this CPU reports."""
    flags = set(_cpuinfo().get("flags", "").split())
    return {flag: flag in flags for flag in _ISA_FLAGS}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the quantlens source tree, with a '+dirty' suffix for uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def _total_memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def _gpu() -> dict[str, Any] | None:
    if "torch" not in sys.modules:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"name": props.name, "memory_bytes": props.total_memory, "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda, "driver": driver}


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), or all logical cores off Linux."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_fingerprint() -> str:
    """A short hash of the hardware: CPU model, logical cores and total memory."""
    key = f"{cpu_model()}|{os.cpu_count()}|{_total_memory_bytes()}|{platform.machine()}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def capture_environment(seeds: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything needed to interpret or reproduce a number measured in this process."""
    threads = None
    if "torch" in sys.modules:
        import torch

        threads = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    return {
        "machine_fingerprint": machine_fingerprint(),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "isa_flags": isa_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_bytes": _total_memory_bytes(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "gpu": _gpu(),
        "seeds": dict(seeds or {}),
        "env_vars": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
                     if k in os.environ},
    }


@dataclass(frozen=True)
class Environment:
    """`environment.json`: `capture_environment`'s record as a typed value (nested parts as written)."""

    FILE: ClassVar[str] = "environment.json"

    machine_fingerprint: str
    hostname: str
    platform: str
    cpu_model: str | None
    isa_flags: list
    logical_cores: int | None
    usable_cores: int
    memory_bytes: int | None
    torch_threads: dict | None
    python: str
    versions: dict
    git_commit: str | None
    gpu: Any
    seeds: dict
    env_vars: dict

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Environment:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})
