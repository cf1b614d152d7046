"""PyTorch x86 INT8 as a deployment runtime: a saved .pt2 file, compiled by inductor, logits as numpy.

    runner = Pt2eRunner(qmodel, example, "model.int8.pt2", threads=1)   # build, check, save, load, compile
    logits = runner.run(batch)                                          # (B, classes) float32 numpy, any B
    runner.size_bytes, runner.sha256                                    # of the file that runs

What runs is the file: the converted graph is saved, read back and compiled, so the latency and agreement a caller
measures belong to the file whose size and sha256 it reports. The one compilation, made when the runner is
built, serves every batch size (inductor.py); latency is the caller's to measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens.backends.pt2e.artefact import load_pt2e, save_pt2e
from quantlens.backends.pt2e.flow import pt2e_model
from quantlens.backends.pt2e.inductor import Compiled, compile_graph, inductor_settings


def _tensor(batch) -> torch.Tensor:
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    return batch.detach().float().cpu().contiguous()


class Pt2eRunner:
    """`run(batch)` -> float32 logits (B, classes) numpy; `file`: the .pt2 that runs; `deployment`: what
    pt2e_model found and checked."""

    def __init__(self, qmodel: nn.Module, example: torch.Tensor, path: str | Path, *, threads: int | None = 1) -> None:
        deployment = pt2e_model(qmodel, example, compile=False, threads=threads)
        written = save_pt2e(deployment.graph_module, example, path)
        module, shape, self.file = load_pt2e(path, written.sha256)  # the very bytes just written (loading unpickles)
        self.threads = threads
        self.deployment = deployment
        self.input_shape = shape  # (C, H, W)
        self.compiled: Compiled = compile_graph(module, torch.zeros(2, *shape), threads)

    @property
    def size_bytes(self) -> int:
        return self.file.size_bytes

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def compile_s(self) -> float:
        return self.compiled.compile_s

    @property
    def int8_kernels(self) -> dict[str, int]:
        return self.compiled.int8_kernels

    def to_dict(self) -> dict[str, Any]:
        """What ran, for a run record: the file, the compilation, and (when built here) what pt2e_model checked."""
        found: dict[str, Any] = {"file": str(self.file.path), "size_bytes": self.size_bytes, "sha256": self.sha256,
                                 "threads": self.threads, "compile_s": self.compile_s,
                                 "int8_kernels": self.int8_kernels}
        if self.deployment is not None:
            d = self.deployment
            found.update(export_s=d.export_s, weights=d.weights, padded_inputs=d.padded_inputs, notes=d.notes,
                         tensors=[t._asdict() for t in d.tensors])
        return found

    def run(self, batch) -> np.ndarray:
        with inductor_settings(self.threads):
            return self.compiled.forward(_tensor(batch)).numpy()

