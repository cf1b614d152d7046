"""What `pt2e_model` returns: the (compiled) INT8 graph and an account of what it quantizes with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from quantlens.backends.pt2e.graph import weight_codes
from quantlens.backends.pt2e.inductor import inductor_settings
from quantlens.backends.pt2e.observers import QuantizedTensor


@dataclass
class Pt2eDeployment:
    """The compiled INT8 model and what it quantizes with.

    run(batch) -> float32 logits (B, classes) as a tensor; tensors: every activation quantization the deployed
    graph performs (and pt2e observers left float); weights: layer -> output channels of its verified s8 codes
    (equal to quantlens's codes); padded_inputs: layers whose single input channel got an all-zero companion
    (channel_pad: inductor's dynamic-batch INT8 convolution needs it; exact); notes: differences between pt2e's
    quantizer and quantlens's recipe worth knowing."""

    compiled: Callable[[torch.Tensor], torch.Tensor]  # the graph module itself when not compiled
    graph_module: torch.fx.GraphModule  # converted: quantize/dequantize nodes and folded int8 weights
    tensors: list[QuantizedTensor]
    weights: dict[str, int]
    notes: list[str] = field(default_factory=list)
    padded_inputs: list[str] = field(default_factory=list)
    export_s: float = 0.0
    compile_s: float = 0.0
    int8_kernels: dict[str, int] = field(default_factory=dict)  # inductor's INT8 lowerings ('qconv', 'qlinear')
    threads: int | None = None  # torch threads for each call (None: the process's setting)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        with inductor_settings(self.threads):
            return self.compiled(batch.detach().float().cpu().contiguous())

    @property
    def int8_weight_bytes(self) -> int:
        """Bytes of the int8 weight constants the graph holds (padding channels included)."""
        return sum(codes.numel() for codes, _ in weight_codes(self.graph_module).values())
