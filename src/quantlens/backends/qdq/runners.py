"""Run a QDQ file: ONNX Runtime CPU (default optimisation level) and OpenVINO CPU (f32 hint).

ONNX Runtime: `precise=True` sets `session.x64quantprecision` (u8 x u8 kernels): on x86 CPUs
without VNNI the default u8 x s8 kernels add pairs of products in saturating int16 lanes, so a
code can differ from the exact int32 accumulation (measured here on an AVX2 EPYC: 17% of one
layer's outputs off); `precise=None` turns it on exactly when the CPU lacks VNNI/AMX-INT8 and a
weight code exceeds 64 (7-bit weights cannot saturate, and keep the faster default kernels).

OpenVINO reads the same file; INFERENCE_PRECISION_HINT f32, so INT8 comes only from the QDQ
pattern (its default on AMX/AVX512-BF16 CPUs would be BF16 for the float parts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from quantlens.backends.base import cpu_has_int8_dot_product
from quantlens.backends.onnx_export import INPUT_NAME, OUTPUT_NAME
from quantlens.backends.onnxruntime import session_options

PRECISE_KEY = "session.x64quantprecision"


def _numpy(batch) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        return batch.detach().cpu().float().contiguous().numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


# |w| <= 64: a pair of u8 x s8 products stays within int16 (255 * 64 * 2 = 32640 <= 32767)
SATURATION_FREE_WEIGHT = 64


def needs_exact_kernels(path: str | Path) -> bool:
    """Whether ONNX Runtime's default u8 x s8 kernels could saturate on this file: only on a CPU without
    VNNI/AMX-INT8, and only when some int8 weight code exceeds 64 in magnitude (7-bit weights never do)."""
    if cpu_has_int8_dot_product():
        return False
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    return any(int(np.abs(numpy_helper.to_array(t).astype(np.int16)).max(initial=0)) > SATURATION_FREE_WEIGHT
               for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8)


def ort_session(path: str | Path, *, threads: int = 1, precise: bool | None = False,
                optimized_model_path: str | Path | None = None):
    """An ONNX Runtime CPU session at the default (full) optimisation level."""
    import onnxruntime as ort

    options = session_options(threads)
    if precise is None:
        precise = needs_exact_kernels(path)
    if precise:
        options.add_session_config_entry(PRECISE_KEY, "1")
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtQdqRunner:
    """`run(batch)` -> float32 logits (B, classes) numpy; `outputs(batch, names)` for intermediates."""

    def __init__(self, path: str | Path, *, threads: int = 1, precise: bool | None = False) -> None:
        self.path = Path(path)
        self.precise = needs_exact_kernels(path) if precise is None else precise
        self.session = ort_session(path, threads=threads, precise=self.precise)

    def run(self, batch) -> np.ndarray:
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: _numpy(batch)})
        return logits

    def outputs(self, batch, names: list[str]) -> dict[str, np.ndarray]:
        values = self.session.run(list(names), {INPUT_NAME: _numpy(batch)})
        return dict(zip(names, values, strict=True))


class OpenVinoQdqRunner:
    """The QDQ file on OpenVINO's CPU plugin through the project's `OpenVinoRunner` (one compiled
    model per batch size, static shapes, f32 precision hint: INT8 only where the QDQ pattern says)."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import openvino as ov

        from quantlens.backends.base import RunnerInfo
        from quantlens.backends.openvino import OpenVinoRunner

        self.path = Path(path)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY"}
        info = RunnerInfo("openvino-qdq", "int8", "int8", "cpu", f"openvino {ov.__version__} CPU", threads)
        self.runner = OpenVinoRunner(ov.Core().read_model(str(path)), config, info)

    def run(self, batch) -> np.ndarray:
        return self.runner.run(torch.from_numpy(_numpy(batch))).numpy().copy()

    def runtime_model(self, shape: tuple[int, ...]):
        """The compiled model's runtime graph at one input shape (for `inspect.openvino_fusion`)."""
        return self.runner._request(tuple(shape)).get_compiled_model().get_runtime_model()
