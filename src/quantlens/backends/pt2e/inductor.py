"""Compiling a converted pt2e graph with inductor, and the settings it runs under.

INT8 is fast only with `torch._inductor.config.freezing = True` (weights become constants, so inductor prepacks
them for oneDNN's INT8 convolutions and matrix products; without it they run as dequantize + float kernels).
quantlens sets it, and the torch thread count when asked, for the duration of each compile and call only, and
restores both afterwards (freezing off also fails to compile with a dynamic batch: inductor's float convolution
path mis-predicts its output strides, measured on compact_cnn with 1 and 3 input channels).

The batch axis is compiled *unbacked* (`mark_unbacked`): one compilation serves every batch size, 1 included.
A batch marked with `mark_dynamic` instead gets guards on its value: dynamo specialises size 1, and the
convolution's fake kernel picks its memory format by asking which backend the hinted batch would use, which
guards the batch to 2-15 or >= 16; each range compiles separately (measured on compact_cnn: sizes 64, 5 and 1
took three compilations, 8-13 s, instead of one, 3 s; batch-64 latency the same).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from quantlens.backends.base import BackendError, torch_threads
from quantlens.backends.pt2e.api import quiet_torchao
from quantlens.errors import describe


@contextlib.contextmanager
def inductor_settings(threads: int | None = None) -> Iterator[None]:
    """no_grad, freezing on, torchao/torch quiet and `threads` torch threads (None: unchanged); all restored."""
    with (torch_threads(threads) if threads is not None else contextlib.nullcontext()), torch.no_grad(), \
            quiet_torchao(), torch._inductor.config.patch(freezing=True):
        yield


def kernel_counters() -> dict[str, int]:
    """Inductor's INT8 lowering counters ('qconv_unary', 'qconv_binary', 'qlinear_unary' ...), process-wide."""
    from torch._dynamo.utils import counters

    found = {}
    for key, value in counters["inductor"].items():
        if key.startswith(("qconv", "qlinear")) and key.endswith("_lower_count"):
            found[key[: -len("_lower_count")]] = int(value)
    return found


@dataclass(frozen=True)
class Compiled:
    """A compiled graph, how long its first (compiling) call took and the INT8 lowerings inductor made."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    compile_s: float
    int8_kernels: dict[str, int]  # 'qconv_unary' -> count, ...; {} when nothing was lowered to INT8


def warmup_batch(example: torch.Tensor) -> torch.Tensor:
    """Two images shaped like `example` (export's dynamic batch needs a size >= 2 to trace)."""
    example = example.detach().float().cpu()
    batch = example[:2] if example.shape[0] >= 2 else example.repeat(2, *([1] * (example.dim() - 1)))
    return batch.clone().contiguous()


def compile_graph(module: torch.nn.Module, example: torch.Tensor, threads: int | None = None) -> Compiled:
    """`torch.compile(module, backend="inductor")`, compiled now by one call on a batch of two whose size is
    unbacked (any batch size runs this compilation). BackendError (one line) when inductor fails."""
    forward = torch.compile(module, backend="inductor")
    batch = warmup_batch(example)
    torch._dynamo.decorators.mark_unbacked(batch, 0)
    before = kernel_counters()
    start = time.perf_counter()
    with inductor_settings(threads):
        try:
            forward(batch)
        except Exception as error:  # inductor raises many types; each becomes one line
            raise BackendError(f"pt2e deployment: inductor compilation failed: {describe(error)}") from error
    compile_s = time.perf_counter() - start
    after = kernel_counters()
    lowered = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
    return Compiled(forward, compile_s, lowered)
