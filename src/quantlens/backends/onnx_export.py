"""Export a torch model to ONNX once, with a dynamic batch axis, and refuse an export that is wrong.

`torch.onnx.export` (the dynamo exporter, which needs onnxscript) writes weights to a separate
`<model>.onnx.data` file unless `external_data=False`; models here are small enough to keep in
one file, which also keeps `model_file_sizes` and ONNX Runtime quantization simple. The batch
axis is exported as a symbol (`batch`), so one file serves every batch size; the export is traced
with a batch of two, because a batch of one would be specialised to a constant.

Each export is checked: ONNX Runtime runs the file on the example batch (and on a single sample,
which exercises the dynamic axis) and its logits must match torch's within
`atol + rtol * max|torch logits|`; otherwise the export is refused with the figures.

Exports are cached in the work directory under a fingerprint of the weights, the module's
structure and the input shape, so the ONNX backends of one benchmark share one export.

A module that is the PyTorch form of an ONNX file the user gave (`models.onnx.interface.onnx_source_of`)
is not exported again: the file itself is written with quantlens's input/output names around its graph
and checked the same way, so ONNX Runtime and OpenVINO run the graph as it is. A file that fixes its
batch size cannot serve every batch size; its PyTorch form is exported instead.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens.atomic import atomic_path, write_json
from quantlens.backends.base import BackendError, MissingPackageError, missing_package_message, package_installed
from quantlens.errors import describe

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4
_MAX_VERIFY_SAMPLES = 8
# The exporter logs one warning per torchvision operator it cannot register (torchvision is not
# installable next to CPU torch here); they say nothing about the model being exported.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@dataclass(frozen=True)
class OnnxExport:
    """A verified FP32 ONNX file: `max_abs_diff` between ONNX Runtime and torch on the check batch,
    and the tolerance it had to meet."""

    path: Path
    max_abs_diff: float
    tolerance: float
    verified_batch_sizes: tuple[int, ...]
    origin: str = "torch.onnx.export"  # or "the ONNX file as it is (<path>)"

    def describe(self) -> str:
        """One line for a backend's notes: what runs, and how close it is to the torch module."""
        what = "FP32 export" if self.origin == "torch.onnx.export" else self.origin
        return (f"{what} verified against torch: max |logit difference| {self.max_abs_diff:.2g} "
                f"(tolerance {self.tolerance:.2g})")


def model_fingerprint(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """sha256 over the module's repr, every state_dict tensor (name, dtype, shape, bytes) and the
    (C, H, W) input shape: the same model exported twice gets the same name."""
    digest = hashlib.sha256()
    digest.update(repr(model).encode())
    digest.update(repr(tuple(input_shape)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence, for the export only, what the exporter says about itself rather than the model."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export's pytree internals warn about their own deprecated LeafSpec check.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def require_export_packages(backend: str) -> None:
    for package in EXPORT_PACKAGES:
        if not package_installed(package):
            raise MissingPackageError(missing_package_message(backend, package))


def _cpu_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify_against_torch(path: Path, module: nn.Module, example_input: torch.Tensor, *, rtol: float,
                         atol: float) -> tuple[float, float, tuple[int, ...]]:
    """(max |ORT - torch|, tolerance, batch sizes checked); BackendError when over tolerance."""
    batch = example_input[:_MAX_VERIFY_SAMPLES]
    with torch.no_grad():
        reference = module(batch).float().numpy()
    session = _cpu_session(path)
    worst = 0.0
    sizes = tuple(sorted({1, int(batch.shape[0])}))
    tolerance = atol + rtol * float(np.abs(reference).max())
    for size in sizes:
        (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch[:size].numpy()})
        if output.shape != reference[:size].shape:
            raise BackendError(f"exported ONNX model {path.name} returns shape {output.shape} for a batch of "
                               f"{size}, torch returns {reference[:size].shape}; export refused")
        worst = max(worst, float(np.abs(output - reference[:size]).max()))
    if not worst <= tolerance:
        raise BackendError(f"exported ONNX model {path.name} disagrees with torch: max |logit difference| "
                           f"{worst:.3g} > tolerance {tolerance:.3g} (atol {atol:g} + rtol {rtol:g} x max|logit|); "
                           f"export refused")
    return worst, tolerance, sizes


def export_onnx(model: nn.Module, example_input: torch.Tensor, work_dir: str | Path, *, backend: str = "onnx export",
                rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> OnnxExport:
    """The model as a verified FP32 ONNX file in `work_dir/onnx/` (reused when already there).

    example_input: float32 (B, C, H, W); any B, the file takes every batch size.
    """
    require_export_packages(backend)
    import onnx

    from quantlens.models.onnx.interface import onnx_source_of  # noqa: PLC0415  (the onnx packages, checked above)

    source = onnx_source_of(model)
    if source is not None and source.file.input.batch is None:
        return _file_as_it_is(source, model, example_input.detach().float().cpu(), Path(work_dir) / "onnx",
                              rtol=rtol, atol=atol)
    module = copy.deepcopy(model).eval().cpu().float()
    example_input = example_input.detach().float().cpu()
    folder = Path(work_dir) / "onnx"
    fingerprint = model_fingerprint(module, tuple(example_input.shape[1:]))
    path = folder / f"model-{fingerprint}.onnx"
    sidecar = path.with_suffix(".verified.json")
    if path.is_file() and sidecar.is_file():
        check = json.loads(sidecar.read_text(encoding="utf-8"))
        # reused only when it was verified to this very tolerance (the file name keys the model, not it)
        if check.get("rtol") == rtol and check.get("atol") == atol:
            return OnnxExport(path, check["max_abs_diff"], check["tolerance"], tuple(check["verified_batch_sizes"]))
        return _record(path, verify_against_torch(path, module, example_input, rtol=rtol, atol=atol), rtol, atol)

    trace_batch = example_input[:2] if example_input.shape[0] >= 2 else example_input.repeat(2, 1, 1, 1)
    batch_axis = torch.export.Dim("batch", min=1)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(module, (trace_batch,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: batch_axis},), external_data=False, dynamo=True, verbose=False)
        except torch.onnx.OnnxExporterError as error:
            raise BackendError(f"{backend}: torch.onnx.export failed: {describe(error)}") from error
        onnx.checker.check_model(str(tmp))
        check = verify_against_torch(tmp, module, example_input, rtol=rtol, atol=atol)  # refused before it lands
    return _record(path, check, rtol, atol)


def _file_as_it_is(source, model: nn.Module, example_input: torch.Tensor, folder: Path, *, rtol: float,
                   atol: float) -> OnnxExport:
    """`source` (models.onnx.OnnxModel)'s file with quantlens's interface in `folder`, checked against
    `model`, its PyTorch form; keyed by the file's sha256, layout and output kind."""
    origin = f"the ONNX file as it is ({source.file.path})"
    path = folder / f"file-{source.file.sha256[:16]}-{source.layout}-{source.output.kind}.onnx"
    sidecar = path.with_suffix(".verified.json")
    if path.is_file() and sidecar.is_file():
        check = json.loads(sidecar.read_text(encoding="utf-8"))
        if check.get("rtol") == rtol and check.get("atol") == atol:
            return OnnxExport(path, check["max_abs_diff"], check["tolerance"], tuple(check["verified_batch_sizes"]),
                              origin)
    module = model.eval()  # the PyTorch form itself: a copy would not be the file's form
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        source.write_runtime_file(tmp)
        check = verify_against_torch(tmp, module, example_input, rtol=rtol, atol=atol)
    return _record(path, check, rtol, atol, origin)


def _record(path: Path, check: tuple[float, float, tuple[int, ...]], rtol: float, atol: float,
            origin: str = "torch.onnx.export") -> OnnxExport:
    """Write a verification (max |difference|, tolerance, batch sizes) and the tolerance asked for beside the file."""
    worst, tolerance, sizes = check
    write_json(path.with_suffix(".verified.json"), {"max_abs_diff": worst, "tolerance": tolerance,
                                                    "verified_batch_sizes": list(sizes), "rtol": rtol, "atol": atol})
    return OnnxExport(path, worst, tolerance, sizes, origin)


def initializer_bytes(path: str | Path) -> int:
    """Bytes of an ONNX model's weights as stored: its initializers, and the tensors of its Constant nodes
    (where old exporters put the weights)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = [attribute.t for node in model.graph.node if node.op_type == "Constant"
                 for attribute in node.attribute if attribute.name == "value"]
    return int(sum(numpy_helper.to_array(tensor).nbytes for tensor in (*model.graph.initializer, *constants)))


def metadata_json(path_or_model, key: str) -> dict[str, Any] | None:
    """The JSON a quantlens exporter stored under `key` in an ONNX file's metadata (None when absent)."""
    import onnx

    model = path_or_model if hasattr(path_or_model, "graph") else onnx.load(str(path_or_model))
    for prop in model.metadata_props:
        if prop.key == key:
            return json.loads(prop.value)
    return None
