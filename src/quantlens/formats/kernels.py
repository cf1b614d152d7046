"""Run an elementwise rounding kernel eagerly or fused by torch.compile, with identical results.

Each kernel is a pure function of tensors built only from exact operations (integer bit
operations, multiplications/divisions by powers of two, round/floor, comparisons), so the
fused inductor build and eager torch give the same bits; tests check both on adversarial inputs.
Eager torch runs each op as a full memory pass (about 15 of them); the fused build is one pass.

Path choice, per call (`path=`):
  "eager"    always the plain torch ops;
  "compiled" always the fused build (an error if it cannot be built);
  "auto"     fused for tensors of at least `COMPILE_MIN_NUMEL` elements (a build costs seconds,
             worth it only on large tensors), eager below that. If the very first build fails
             (e.g. no C++ compiler) the kernel stays eager for good, with one warning naming the
             reason; if a later build for a new shape fails, that call runs eagerly (one warning).

One build serves all sizes (dynamic shapes), but torch specialises on dimensions of size 1, so
each broadcast pattern of the (P, G, L, Q) layout is a build of its own: up to about ten per
kernel. torch's default limit of 8 builds per function is raised to `RECOMPILE_LIMIT` for the
duration of our calls only (torch._dynamo.config.patch restores it).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Literal

import torch

from quantlens.errors import describe

KernelPath = Literal["auto", "compiled", "eager"]
KERNEL_PATHS: tuple[str, ...] = ("auto", "compiled", "eager")
COMPILE_MIN_NUMEL = 1 << 16
RECOMPILE_LIMIT = 64


def _build_limits() -> contextlib.AbstractContextManager:
    config = getattr(getattr(torch, "_dynamo", None), "config", None)
    limit = getattr(config, "recompile_limit", None)
    if limit is None or limit >= RECOMPILE_LIMIT:
        return contextlib.nullcontext()
    return config.patch(recompile_limit=RECOMPILE_LIMIT)


class Kernel:
    """A pure tensor function with an optional fused form. Call as `kernel(*tensors, path=...)`.

    The first tensor argument sets the size used by the "auto" policy. Kernels always run under
    `torch.no_grad()` (gradients are the autograd.Function's business, see scaling/ste.py).
    """

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self._compiled: Callable[..., torch.Tensor] | None = None
        self._built_once = False  # a fused call has succeeded: the toolchain works here
        self._warned_late_failure = False
        self.failure: str | None = None  # why the fused build is unavailable, once known

    def __repr__(self) -> str:
        return f"Kernel({self.name}, {self.status})"

    @property
    def status(self) -> str:
        """"fused", "not built yet" or "eager (reason)": what the "auto" path uses now."""
        if self.failure:
            return f"eager ({self.failure})"
        return "fused" if self._built_once else "not built yet"

    def _fused(self) -> Callable[..., torch.Tensor]:
        if self._compiled is None:
            # dynamic=True: one build serves every size; fullgraph: a graph break would be a bug here
            self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
        return self._compiled

    def _run_fused(self, args) -> torch.Tensor:
        with _build_limits():
            out = self._fused()(*args)
        self._built_once = True
        return out

    def __call__(self, *args: torch.Tensor, path: KernelPath = "auto") -> torch.Tensor:
        if path not in KERNEL_PATHS:
            raise ValueError(f"kernel path must be one of {', '.join(KERNEL_PATHS)}, got {path!r}")
        with torch.no_grad():
            if path == "eager" or (path == "auto" and (self.failure or args[0].numel() < COMPILE_MIN_NUMEL)):
                return self.fn(*args)
            if path == "compiled":
                return self._run_fused(args)
            try:
                return self._run_fused(args)
            except Exception as err:  # noqa: BLE001 - re-raised below unless eager succeeds
                result = self.fn(*args)  # a genuine error in the inputs raises here, unchanged
                self._note_failure(err)
                return result

    def _note_failure(self, err: Exception) -> None:
        if not self._built_once:
            self.failure = describe(err)
            warnings.warn(f"quantlens: the fused {self.name} kernel could not be built ({self.failure}); "
                          "using eager torch ops from now on (same results, slower)", RuntimeWarning, stacklevel=4)
        elif not self._warned_late_failure:
            self._warned_late_failure = True
            warnings.warn(f"quantlens: the fused {self.name} kernel failed for a new input shape "
                          f"({describe(err)}); that call ran eagerly (same results, slower)",
                          RuntimeWarning, stacklevel=4)


def kernel_status(kernels: dict[str, Kernel]) -> dict[str, str]:
    """name -> each kernel's `status`, e.g. for a benchmark's environment record."""
    return {name: k.status for name, k in kernels.items()}
