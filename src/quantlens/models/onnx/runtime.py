"""An ONNX file run as it is on ONNX Runtime, as a torch module that evaluation can call.

`forward` takes what every quantlens model takes -- float32 (B, C, H, W) -- and hands the file what
it declares: NHWC files get the batch transposed, and a file with a fixed batch size gets the data
in batches of exactly that size, the last one padded by repeating its final sample (the padded
rows' outputs are dropped). Outputs come back as float32 on the input's device; a file that returns
probabilities returns their log here (see `quantlens.train.outputs`).

The session is built on first use with as many intra-op threads as torch uses, and is not copied:
a deep copy or a pickle carries the file's bytes and builds its own session when it runs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from quantlens.errors import ModelError, describe
from quantlens.models.onnx.file import OnnxFile
from quantlens.train.outputs import OUTPUT_ATTRIBUTE, log_of_probabilities

PROVIDER = "CPUExecutionProvider"


class OnnxRuntimeModule(nn.Module):
    """`file` on ONNX Runtime's CPU provider, with `layout` ("nchw" | "nhwc") and the file's output
    `kind` ("logits" | "probabilities" | "log_probabilities"; probabilities are returned as logs)."""

    def __init__(self, file: OnnxFile, layout: str, kind: str = "logits") -> None:
        super().__init__()
        self.path = str(file.path)
        self.layout = layout
        self.kind = kind
        self.input_name = file.input.name
        self.output_name = file.output_name
        self.fixed_batch = file.input.batch
        self._model_bytes = file.proto.SerializeToString()
        self._session = None
        self._session_threads = 0
        setattr(self, OUTPUT_ATTRIBUTE, "log_probabilities" if kind == "probabilities" else kind)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None  # a session is not copyable; the copy builds its own
        return state

    def _get_session(self):
        threads = torch.get_num_threads()
        if self._session is None or self._session_threads != threads:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # errors only
            self._session = ort.InferenceSession(self._model_bytes, options, providers=[PROVIDER])
            self._session_threads = threads
        return self._session

    def _run(self, x: np.ndarray) -> np.ndarray:
        """x: (B, ...) float32 in the file's layout -> (B, classes) float32, batched at a fixed size."""
        session = self._get_session()
        size = self.fixed_batch
        if size is None or size == len(x):
            return session.run([self.output_name], {self.input_name: x})[0]
        outputs = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            real = len(chunk)
            if real < size:  # (size - real) copies of the last sample; their outputs are dropped
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)])
            outputs.append(session.run([self.output_name], {self.input_name: chunk})[0][:real])
        return np.concatenate(outputs)

    def raw_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """x: float32 (B, C, H, W) -> what the file returns, (B, classes) float32 on the CPU."""
        array = x.detach().cpu().float()
        if self.layout == "nhwc":
            array = array.permute(0, 2, 3, 1)  # (B, H, W, C)
        try:
            out = self._run(np.ascontiguousarray(array.numpy()))
        except Exception as exc:  # onnxruntime's own errors: wrong shape, missing kernel
            raise ModelError(f"ONNX Runtime cannot run {self.path} on a batch of shape {tuple(array.shape)} "
                             f"({describe(exc)})") from None
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw_outputs(x)
        if self.kind == "probabilities":
            out = log_of_probabilities(out)
        return out.to(x.device)

    def extra_repr(self) -> str:
        batch = "dynamic batch" if self.fixed_batch is None else f"fixed batch {self.fixed_batch}"
        return f"{self.path}, {self.layout.upper()}, {batch}, outputs {self.kind}, ONNX Runtime {PROVIDER}"
