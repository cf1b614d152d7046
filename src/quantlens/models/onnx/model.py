"""An ONNX file set up for an experiment: its layout and output kind resolved, the file as it is on
ONNX Runtime, and -- when the run quantizes, benchmarks or compares it -- its PyTorch form, verified
against ONNX Runtime on real samples."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from quantlens import events
from quantlens.errors import ModelError
from quantlens.models.onnx.convert import Conversion, to_torch, verify
from quantlens.models.onnx.file import LAYOUTS, OnnxFile
from quantlens.models.onnx.interface import register_source, write_runtime_file
from quantlens.models.onnx.runtime import OnnxRuntimeModule
from quantlens.train.outputs import OutputInfo, adapt_outputs, handling, resolve_output_kind


def resolve_layout(file: OnnxFile, declared: str | None) -> tuple[str, str]:
    """(layout, where it came from): declared, else the file's metadata, else its input, else NCHW."""
    if declared in LAYOUTS:
        return declared, "declared (model.input_layout)"
    if file.hints.layout is not None:
        return file.hints.layout, f"the file's metadata ({file.hints.origin['layout']})"
    if file.input.layout is not None:
        return file.input.layout, f"read from the file's input {file.input.name!r} {list(file.input.shape)}"
    return "nchw", (f"assumed: the file's input {list(file.input.shape)} does not tell NCHW from NHWC "
                    f"(give --input-layout)")


def _output_kind(file: OnnxFile, declared: str | None, raw: torch.Tensor) -> tuple[str, str]:
    if declared is not None:
        declared, origin = declared, "declared (model.output)"
    elif file.hints.output is not None:
        declared, origin = file.hints.output, f"the file's metadata ({file.hints.origin['output']})"
    else:
        origin = ""
    kind, origin, disagreement = resolve_output_kind(declared, origin, raw)
    if disagreement:
        events.warn(f"{file.path}: {disagreement}")
    return kind, origin


@dataclass
class OnnxModel:
    """`runtime` runs the file as it is; `torch_form` (None unless converted) is its PyTorch form with
    the same interface: float32 (B, C, H, W) in, scores whose softmax are the probabilities out."""

    file: OnnxFile
    layout: str
    layout_origin: str
    output: OutputInfo
    runtime: OnnxRuntimeModule
    torch_form: nn.Module | None = None
    conversion: Conversion | None = None

    @property
    def model(self) -> nn.Module:
        """What the experiment quantizes, trains or wraps: the PyTorch form when there is one, else the file
        on ONNX Runtime (FP32 evaluation always runs `runtime`)."""
        return self.torch_form if self.torch_form is not None else self.runtime

    def write_runtime_file(self, path) -> Path:
        """The file as it is, with quantlens's runtime interface (input `input` NCHW, output `logits`;
        `interface.runtime_proto`), written to `path`: what an ONNX Runtime or OpenVINO backend can run
        instead of exporting the PyTorch form again."""
        return write_runtime_file(self.file, self.layout, self.output.kind, path)

    def describe(self) -> dict:
        batch = self.file.input.batch
        return {**self.file.describe(), "layout": self.layout, "layout_origin": self.layout_origin,
                "runs_on": "ONNX Runtime (CPUExecutionProvider), the file as it is, for FP32 evaluation",
                "quantized_from": "its PyTorch form (onnx2torch), verified against ONNX Runtime"
                if self.torch_form is not None else None,
                "fixed_batch_handling": None if batch is None else
                f"batches of {batch}; a short last batch is padded by repeating its last sample, whose extra "
                f"outputs are dropped",
                "conversion": None if self.conversion is None else self.conversion.to_dict()}


def open_onnx_model(file: OnnxFile, *, layout: str, layout_origin: str, declared_output: str | None,
                    probe: torch.Tensor, num_classes: int | None, convert: bool) -> OnnxModel:
    """Set `file` up on `probe`, a float32 (B, C, H, W) batch of real samples preprocessed as the model
    expects: the output shape is checked against `num_classes` (when the data says it), the output kind
    declared or detected, and with `convert` the PyTorch form is built and verified on the probe and on
    its first sample alone."""
    runtime = OnnxRuntimeModule(file, layout)
    with torch.inference_mode():
        raw = runtime.raw_outputs(probe)  # (B, classes) as the file returns them
    if raw.ndim != 2 or (num_classes is not None and raw.shape[1] != num_classes):
        needed = f"the data has {num_classes} classes, so (batch, {num_classes})" if num_classes else "(batch, classes)"
        raise ModelError(f"{file.path} returns outputs of shape {tuple(raw.shape)}; {needed} is needed")
    kind, origin = _output_kind(file, declared_output, raw)
    runtime = OnnxRuntimeModule(file, layout, kind)
    if not convert:
        return OnnxModel(file, layout, layout_origin, OutputInfo(kind, origin, handling(kind)), runtime)
    torch_form, opset = to_torch(file, layout, tuple(probe.shape[1:]))
    conversion = replace(verify(torch_form, raw, probe, str(file.path)), opset=opset)
    verify(torch_form, raw[:1], probe[:1], str(file.path))  # a batch of one: the batch axis is free
    events.note(f"{file.path} converted to PyTorch (onnx2torch): {conversion.describe()}")
    torch_form, how = adapt_outputs(torch_form, kind)
    opened = OnnxModel(file, layout, layout_origin, OutputInfo(kind, origin, how), runtime, torch_form, conversion)
    register_source(torch_form, opened)  # backends: `interface.onnx_source_of(model)`
    return opened
