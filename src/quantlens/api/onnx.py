"""`load_onnx`: an ONNX classifier quantlens did not write, as a PyTorch module the other calls take.

The module is the file's PyTorch form (onnx2torch), checked against ONNX Runtime on the caller's own
samples before it is returned; it takes float32 (B, C, H, W) whatever the file's layout, and returns
scores whose softmax is the model's probabilities (a file ending in a Softmax gets no second one).
`quantlens.benchmark` runs the file itself on ONNX Runtime and OpenVINO, not a re-export of it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from quantlens import events
from quantlens.errors import ConfigError
from quantlens.models.onnx import load_onnx_file, open_onnx_model, resolve_layout
from quantlens.train.outputs import OUTPUT_KINDS


def load_onnx(path: str | Path, example: torch.Tensor, *, layout: str | None = None,
              output: str | None = None) -> nn.Module:
    """The verified PyTorch form of the ONNX file at `path`.

    example: float32 (B, C, H, W) real inputs, preprocessed as the model expects (NCHW even for an NHWC
    file); ONNX Runtime and the PyTorch form must agree on them to 1e-4 (+1e-4 x max |output|), on the
    batch and on its first sample alone. layout: "nchw" or "nhwc" (default: the file's metadata, else its
    input shape, else NCHW). output: "logits", "probabilities" or "log_probabilities" (default: the file's
    metadata, else detected on `example`). ModelError in one line for a file that cannot be read,
    converted or verified (naming an operator onnx2torch cannot convert).
    """
    if not isinstance(example, torch.Tensor) or example.ndim != 4:
        raise ConfigError(f"example must be a float (B, C, H, W) tensor of real inputs, got "
                          f"{getattr(example, 'shape', type(example).__name__)}")
    if output is not None and output not in OUTPUT_KINDS:
        raise ConfigError(f"output {output!r} is not one of {', '.join(OUTPUT_KINDS)}")
    if layout is not None and layout not in ("nchw", "nhwc"):
        raise ConfigError(f"layout {layout!r} is not one of nchw, nhwc")
    file = load_onnx_file(path)
    chosen, origin = resolve_layout(file, layout)
    opened = open_onnx_model(file, layout=chosen, layout_origin=origin, declared_output=output,
                             probe=example.detach().float().cpu(), num_classes=file.num_classes, convert=True)
    events.note(f"{file.path}: {chosen.upper()} input ({origin}); {opened.output.describe()}; converted to "
                f"PyTorch: {opened.conversion.describe()}")
    return opened.torch_form
