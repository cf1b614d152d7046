"""The deployed INT8 graph as a file: `torch.export.save` of the converted program (.pt2).

The file holds the graph with its quantize/dequantize nodes (quantlens's scales and zero points), the int8 weight
codes, float32 biases and the per-channel weight scales, and a dynamic batch axis; the float weights convert_pt2e
folded are pruned first, so its size is what the INT8 model needs. Its bytes depend only on the graph (no node
provenance or stack traces; the sample input torch.export stores is zeros), so one model gives one sha256.
`load_pt2e` reads it back as the same graph (eager: reference quantize/dequantize in float); `Pt2eRunner` compiles
what it loaded, so the file is what runs.

Trust: `torch.export.load` unpickles (weights_only=False inside torch), so a .pt2 is code, not data. quantlens
reads back only a file it has just written, and only when its sha256 still equals the one computed from the
bytes it wrote (`expected_sha256`); it never loads a .pt2 from elsewhere.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from quantlens.atomic import write_bytes
from quantlens.backends.base import BackendError
from quantlens.backends.pt2e.api import load_torchao, quiet_torchao
from quantlens.backends.pt2e.inductor import warmup_batch
from quantlens.errors import describe

SUFFIX = ".pt2"


@dataclass(frozen=True)
class Pt2eFile:
    path: Path
    size_bytes: int
    sha256: str


def _describe_file(path: Path) -> Pt2eFile:
    data = path.read_bytes()
    return Pt2eFile(path, len(data), hashlib.sha256(data).hexdigest())


def save_pt2e(graph_module: torch.fx.GraphModule, example: torch.Tensor, path: str | Path) -> Pt2eFile:
    """Export the converted graph (dynamic batch) and write it atomically to `path` (must end in .pt2)."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise BackendError(f"pt2e file {path}: the name must end in {SUFFIX} (torch.export's format)")
    with quiet_torchao():
        try:
            # zeros: torch.export stores the example in the file, and a user's (patient's) images do not belong there
            program = torch.export.export(graph_module, (torch.zeros_like(warmup_batch(example)),),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        except Exception as error:  # export raises many types; each becomes one line
            raise BackendError(f"pt2e deployment: exporting the converted graph failed: {describe(error)}") from error
        for node in program.graph.nodes:  # provenance (Python object ids) and stack traces: bulky, run-specific
            node.meta.pop("from_node", None)
            node.meta.pop("stack_trace", None)
        buffer = io.BytesIO()  # a file name would become the archive's folder name inside the zip (a temp name)
        torch.export.save(program, buffer)
    write_bytes(path, buffer.getvalue())
    return _describe_file(path)


def load_pt2e(path: str | Path, expected_sha256: str) -> tuple[torch.fx.GraphModule, tuple[int, ...], Pt2eFile]:
    """(the saved graph as a module, one input's shape without the batch axis, the file's size and sha256) of a
    file `save_pt2e` wrote: refused unless its bytes still have `expected_sha256` (loading unpickles)."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"pt2e file {path}: not found")
    if _describe_file(path).sha256 != expected_sha256:
        raise BackendError(f"pt2e file {path}: its sha256 is not that of the file quantlens wrote; not loaded "
                           "(torch.export.load unpickles: only files quantlens just wrote are read)")
    load_torchao()  # registers the quantized_decomposed operators the graph calls
    with quiet_torchao():
        try:
            program = torch.export.load(path)
        except Exception as error:
            raise BackendError(f"pt2e file {path}: cannot be read as a torch.export program ({describe(error)})") \
                from error
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in
              program.graph_signature.user_inputs]
    if len(inputs) != 1 or "val" not in inputs[0].meta:
        raise BackendError(f"pt2e file {path}: expected one image input, found {len(inputs)}")
    shape = tuple(int(d) for d in inputs[0].meta["val"].shape[1:])  # (C, H, W); the batch axis is symbolic
    return program.module(), shape, _describe_file(path)
