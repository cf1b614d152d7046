"""ONNX files as models: `onnx:<file>` or a path ending in `.onnx`.

    file = load_onnx_file("net.onnx")              # checked; input layout, batch, metadata hints
    runtime = OnnxRuntimeModule(file, "nchw")      # the file as it is, on ONNX Runtime (evaluation)
    torch_form, opset = to_torch(file, "nchw")     # onnx2torch, for simulation and PTQ
    verify(torch_form, runtime.raw_outputs(x), x, file.path)   # max |difference|, or ModelError

`open_onnx_model` does all of it for an experiment (see `quantlens.experiments.setup`);
`onnx_source_of(model)` gives a backend the file an experiment's module came from, and
`OnnxModel.write_runtime_file` that file with quantlens's runtime interface, to run as it is.
"""

from quantlens.models.onnx.convert import Conversion, to_torch, verify
from quantlens.models.onnx.file import LAYOUTS, FileHints, InputSpec, OnnxFile, load_onnx_file
from quantlens.models.onnx.interface import onnx_source_of, runtime_proto, write_runtime_file
from quantlens.models.onnx.model import OnnxModel, open_onnx_model, resolve_layout
from quantlens.models.onnx.runtime import OnnxRuntimeModule

__all__ = ["LAYOUTS", "Conversion", "FileHints", "InputSpec", "OnnxFile", "OnnxModel", "OnnxRuntimeModule",
           "load_onnx_file", "onnx_source_of", "open_onnx_model", "resolve_layout", "runtime_proto", "to_torch",
           "verify", "write_runtime_file"]
