"""An ONNX file as a model: read and checked once, and what it says about its input and output.

A classifier file has one image input, rank 4, in NCHW or NHWC layout (a batch axis that is a
number is a fixed batch size; a name or nothing is dynamic), and one (batch, classes) output. What
the file says about its preprocessing is read from its metadata (`metadata_props`): quantlens's own
keys (`mean`, `std`, `pixel_scale`, `input_layout`, `output`) and the ONNX image metadata key
`Image.NominalPixelRange` (NominalRange_0_255, Normalized_0_1, Normalized_1_1).

Every problem with the file -- missing, unreadable, corrupt, not a classifier -- is one `ModelError`
line naming the file.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from quantlens.errors import ModelError, describe

LAYOUTS = ("nchw", "nhwc")
# ONNX's image metadata (onnx/docs/MetadataProps.md): pixel range -> (pixel_scale, mean, std) in units
# of that scale. NominalRange_0_255: raw 0..255 pixels; Normalized_0_1: [0, 1]; Normalized_1_1: [-1, 1].
_NOMINAL_RANGES = {"nominalrange_0_255": (255.0, 0.0, 1.0), "normalized_0_1": (1.0, 0.0, 1.0),
                   "normalized_1_1": (1.0, 0.5, 0.5)}


@dataclass(frozen=True)
class InputSpec:
    """The image input: `shape` as the file declares it (ints, or None for a named or missing
    dimension), and the layout read from it (None when the shape cannot tell)."""

    name: str
    shape: tuple[int | None, ...]
    layout: str | None

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when the batch axis is dynamic."""
        return self.shape[0]

    def dims(self, layout: str) -> tuple[int | None, int | None, int | None]:
        """(channels, height, width) under `layout`."""
        _, a, b, c = self.shape
        return (a, b, c) if layout == "nchw" else (c, a, b)


@dataclass(frozen=True)
class FileHints:
    """What the file's metadata says about its preprocessing and outputs (None: nothing)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pixel_scale: float | None = None
    layout: str | None = None
    output: str | None = None
    origin: dict[str, str] = field(default_factory=dict)  # setting -> the metadata key it came from


@dataclass(frozen=True, eq=False)
class OnnxFile:
    """A checked ONNX classifier file. `proto` is the loaded ModelProto (do not modify it: copy it)."""

    path: Path
    proto: object  # onnx.ModelProto
    sha256: str
    input: InputSpec
    output_name: str
    num_classes: int | None
    opset: int
    producer: str
    hints: FileHints

    @property
    def parameter_count(self) -> int:
        """Elements of the floating-point weights (initializers and Constant tensors)."""
        from onnx import TensorProto

        floating = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
        tensors = list(self.proto.graph.initializer)
        tensors += [a.t for n in self.proto.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"]
        total = 0
        for tensor in tensors:
            if tensor.data_type in floating:
                count = 1
                for d in tensor.dims:
                    count *= d
                total += count
        return total

    def describe(self) -> dict:
        return {"file": str(self.path), "sha256": self.sha256, "opset": self.opset, "producer": self.producer,
                "input": {"name": self.input.name, "shape": list(self.input.shape), "layout": self.input.layout},
                "output": self.output_name, "classes": self.num_classes,
                "batch": "dynamic" if self.input.batch is None else self.input.batch}


def _dims(value_info) -> tuple[int | None, ...] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)


def _layout(graph, name: str, shape: tuple[int | None, ...]) -> str | None:
    """NCHW or NHWC from the shape (channels 1 or 3 on one side only), else from the first node that
    reads the input: a Transpose to NCHW (perm 0,3,1,2) means NHWC, a Conv means NCHW."""
    _, a, _, c = shape
    if a in (1, 3) and c not in (1, 3):
        return "nchw"
    if c in (1, 3) and a not in (1, 3):
        return "nhwc"
    for node in graph.node:
        if name in node.input:
            if node.op_type == "Transpose":
                perm = next((list(attr.ints) for attr in node.attribute if attr.name == "perm"), None)
                return "nhwc" if perm == [0, 3, 1, 2] else None
            if node.op_type == "Conv":
                return "nchw"
            return None
    return None


def _floats(text: str, key: str, path: Path) -> tuple[float, ...]:
    try:
        values = json.loads(text) if text.strip().startswith("[") else [float(v) for v in text.split(",")]
        return tuple(float(v) for v in (values if isinstance(values, list) else [values]))
    except (ValueError, TypeError):
        raise ModelError(f"{path}: metadata {key}={text!r} is not a list of numbers") from None


def _hints(proto, path: Path) -> FileHints:
    props = {p.key.lower(): (p.key, p.value) for p in proto.metadata_props}
    values: dict = {}
    origin: dict[str, str] = {}
    if "image.nominalpixelrange" in props:
        key, value = props["image.nominalpixelrange"]
        scale_mean_std = _NOMINAL_RANGES.get(value.lower())
        if scale_mean_std is not None:
            scale, mean, std = scale_mean_std
            values.update(pixel_scale=scale, mean=(mean,), std=(std,))
            origin.update(pixel_scale=key, mean=key, std=key)
    for name in ("mean", "std"):
        if name in props:
            key, value = props[name]
            values[name] = _floats(value, key, path)
            origin[name] = key
    if "pixel_scale" in props:
        key, value = props["pixel_scale"]
        (values["pixel_scale"],) = _floats(value, key, path)[:1]
        origin["pixel_scale"] = key
    if "input_layout" in props:
        key, value = props["input_layout"]
        if value.lower() in LAYOUTS:
            values["layout"] = value.lower()
            origin["layout"] = key
    for name in ("output", "output_kind"):
        if name in props:
            key, value = props[name]
            if value.lower() in ("logits", "probabilities", "log_probabilities"):
                values["output"] = value.lower()
                origin["output"] = key
    return FileHints(**values, origin=origin)


def _read(path: Path) -> OnnxFile:
    import onnx

    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are not an ONNX model
        raise ModelError(f"{path} is not a readable ONNX file ({describe(exc)})") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        try:
            proto = onnx.load(str(path))  # weights in files beside it
        except Exception as exc:
            raise ModelError(f"{path}: its external weight files cannot be read ({describe(exc)})") from None
    if not proto.graph.node:
        raise ModelError(f"{path} is not a readable ONNX file: it holds no graph nodes (damaged or empty)")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError: the graph is malformed
        raise ModelError(f"{path} is not a valid ONNX model ({describe(exc)})") from None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); an image "
                         f"classifier takes one")
    shape = _dims(inputs[0])
    if shape is None or len(shape) != 4:
        raise ModelError(f"{path}: input {inputs[0].name!r} has shape {shape}; an image classifier takes a rank-4 "
                         f"(batch, channels, height, width) or (batch, height, width, channels) tensor")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)
        raise ModelError(f"{path}: input {inputs[0].name!r} is {kind}; quantlens feeds float32 images")
    if len(proto.graph.output) != 1:
        raise ModelError(f"{path} has {len(proto.graph.output)} outputs; a classifier returns one (batch, classes) "
                         f"tensor")
    out_shape = _dims(proto.graph.output[0])
    if out_shape is not None and len(out_shape) != 2:
        raise ModelError(f"{path}: output {proto.graph.output[0].name!r} has shape {out_shape}, not (batch, classes)")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    layout = _layout(proto.graph, inputs[0].name, shape)
    return OnnxFile(path=path, proto=proto, sha256=hashlib.sha256(data).hexdigest(),
                    input=InputSpec(inputs[0].name, shape, layout), output_name=proto.graph.output[0].name,
                    num_classes=None if out_shape is None else out_shape[1], opset=opset,
                    producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p) or "unknown",
                    hints=_hints(proto, path))


@functools.lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int, size: int) -> OnnxFile:
    return _read(path)


def load_onnx_file(path: str | Path) -> OnnxFile:
    """The checked file (read once per path, size and modification time); ModelError when it is
    missing, unreadable, corrupt or not a single-input image classifier."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"ONNX file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelError("ONNX models need the onnx package, which is not installed; install it with: "
                         "pip install 'quantlens[onnx]'") from None
    stat = path.stat()
    return _cached(path.resolve(), stat.st_mtime_ns, stat.st_size)
