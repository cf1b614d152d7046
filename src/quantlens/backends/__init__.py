"""Real execution of a model: one registered `Backend` per runtime and precision.

    from quantlens.backends import get_backend, Target, torch_threads
    backend = get_backend("ort-int8")                 # unknown names list the known ones
    ok, reason = backend.available()                  # (False, "... pip install 'quantlens[onnx]'")
    runner = backend.prepare(model, example, calibration_batches, work_dir, Target(threads=2))
    logits = runner.run(batch)                        # float32 (B, classes)
    runner.info.actual_precision, runner.info.notes   # what really ran, and why it differs

Importing this package imports torch only; ONNX Runtime, OpenVINO and TensorRT are imported when
a backend that needs them is prepared.
"""

from quantlens.backends import onnxruntime, openvino, tensorrt, torch_eager, torch_int8  # noqa: F401  (register)
from quantlens.backends.base import (
    BACKENDS,
    PRECISIONS,
    Backend,
    BackendError,
    BackendUnavailableError,
    ForwardParts,
    ForwardSplitError,
    MissingPackageError,
    OperatorProfile,
    OpTiming,
    Runner,
    RunnerInfo,
    Target,
    get_backend,
    install_hint,
    torch_threads,
    usable_cores,
)
from quantlens.backends.onnx_export import OnnxExport, export_onnx
from quantlens.backends.op_categories import compute_precision, float_op_types, op_category

__all__ = [
    "BACKENDS", "PRECISIONS", "Backend", "BackendError", "BackendUnavailableError", "ForwardParts",
    "ForwardSplitError", "MissingPackageError",
    "OnnxExport", "OperatorProfile", "OpTiming", "Runner", "RunnerInfo", "Target", "compute_precision",
    "export_onnx", "float_op_types", "get_backend", "install_hint", "op_category", "torch_threads", "usable_cores",
]
