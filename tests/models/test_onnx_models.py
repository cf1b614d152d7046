"""ONNX files that quantlens did not write, built the ways other tools build them, as models.

One small CNN is trained on scikit-learn's digits (seeded, a few seconds on one core) so that
accuracy means something; its weights are then written by hand with onnx.helper as:
  (a) opset 8, weights in Constant nodes, raw 0..255 pixels scaled inside the graph, a Reshape
      before the classifier (an old exporter);
  (b) channels-last input, a Transpose first and a Softmax last (probabilities);
  (c) a named dynamic batch axis, input statistics in the metadata, LogSoftmax last;
  (d) a fixed batch of 16.
Each is evaluated, simulated (INT8, FP8) and benchmarked from the command line and checked against
ONNX Runtime run directly on the same pixels: same classes, same probabilities (so no second
softmax), and a PyTorch form within 1e-4 of ONNX Runtime.
"""

from __future__ import annotations

import copy
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from quantlens.atomic import read_json
from quantlens.errors import ModelError, UnknownNameError
from quantlens.models.build import ModelRef
from quantlens.models.onnx import (
    OnnxRuntimeModule,
    load_onnx_file,
    onnx_source_of,
    open_onnx_model,
    resolve_layout,
    to_torch,
    verify,
    write_runtime_file,
)

NAMES = ("c1w", "c1b", "c2w", "c2b", "fcw", "fcb")
FIXED_BATCH = 16


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 8) float32 pixels 0..255 as quantlens's digits loader makes them, labels (N,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8).astype(np.float32), bunch.target


def _train_weights() -> list[np.ndarray]:
    """A conv-pool-conv-pool-linear CNN trained 3 epochs on (pixels/255 - 0.5) / 0.5."""
    pixels, labels = _digits()
    z = torch.from_numpy((pixels[:, None] / 255.0 - 0.5) / 0.5)
    y = torch.from_numpy(labels.astype(np.int64))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    generator = torch.Generator().manual_seed(0)
    try:
        for _ in range(3):
            order = torch.randperm(len(z), generator=generator)
            for start in range(0, len(z), 64):
                idx = order[start:start + 64]
                loss = torch.nn.functional.cross_entropy(net(z[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(previous)
    return [p.detach().numpy().copy() for p in net.parameters()]


def _features(source: str) -> list:
    """conv-relu-maxpool twice on NCHW `source` -> 'p2' (B, 16, 2, 2)."""
    return [helper.make_node("Conv", [source, "c1w", "c1b"], ["a1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["a1"], ["r1"]),
            helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Conv", ["p1", "c2w", "c2b"], ["a2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["a2"], ["r2"]),
            helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2])]


def _initializers(weights) -> list:
    return [numpy_helper.from_array(w, name) for w, name in zip(weights, NAMES, strict=True)]


def _model(nodes, inp, out, opset: int, initializers=(), metadata=None, ir_version=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "classifier", [inp], [out], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="hand-built")
    if ir_version is not None:
        model.ir_version = ir_version
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def _value(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def legacy_opset8(weights) -> onnx.ModelProto:
    def const(name, array):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))

    nodes = [const(name, w) for name, w in zip(NAMES, weights, strict=True)]
    nodes += [const("shape", np.array([-1, 64], np.int64)), const("mid", np.array(127.5, np.float32)),
              const("inv", np.array(1 / 127.5, np.float32)), helper.make_node("Sub", ["pixels", "mid"], ["centred"]),
              helper.make_node("Mul", ["centred", "inv"], ["z"])]
    nodes += _features("z") + [helper.make_node("Reshape", ["p2", "shape"], ["flat"]),
                               helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["scores"], transB=1)]
    return _model(nodes, _value("pixels", ["N", 1, 8, 8]), _value("scores", ["N", 10]), 8, ir_version=4)


def legacy_view(weights) -> onnx.ModelProto:
    """What the TorchScript exporter writes for `x.view(x.size(0), -1)`: the Reshape target computed from
    the tensor's shape (Shape -> Gather -> Unsqueeze -> Concat), at opset 9."""
    nodes = _features("input") + [
        helper.make_node("Shape", ["p2"], ["p2_shape"]),
        helper.make_node("Gather", ["p2_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch"], ["batch_1d"], axes=[0]),
        helper.make_node("Concat", ["batch_1d", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["p2", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["logits"], transB=1)]
    extra = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    return _model(nodes, _value("input", ["N", 1, 8, 8]), _value("logits", ["N", 10]), 9,
                  _initializers(weights) + extra)


def channels_last_softmax(weights) -> onnx.ModelProto:
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2])] + _features("nchw")
    nodes += [helper.make_node("Flatten", ["p2"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    return _model(nodes, _value("image", ["batch", 8, 8, 1]), _value("probs", ["batch", 10]), 13,
                  _initializers(weights))


def dynamic_batch(weights) -> onnx.ModelProto:
    # the file takes (pixels/255 - 0.25) / 0.25 and says so in its metadata; 0.5 x - 0.5 is what the CNN was
    # trained on
    nodes = [helper.make_node("Mul", ["x", "half"], ["xs"]), helper.make_node("Add", ["xs", "shift"], ["z"])]
    nodes += _features("z") + [helper.make_node("Flatten", ["p2"], ["flat"], axis=1),
                               helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["logits"], transB=1),
                               helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=1)]
    extra = [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(-0.5, np.float32), "shift")]
    return _model(nodes, _value("x", ["batch_size", 1, 8, 8]), _value("logp", ["batch_size", 10]), 17,
                  _initializers(weights) + extra, metadata={"mean": "0.25", "std": "0.25"})


def fixed_batch(weights, reshape: bool = False, bias: bool = False) -> onnx.ModelProto:
    """NCHW at a fixed batch of 16; with `reshape`, the batch is also baked into a Reshape to (16, 64) (what
    torch.onnx.export writes for a model exported at a fixed batch); with `bias`, into a (16, 10) constant
    added to the scores, which no rewrite of the graph can free."""
    tail = ([helper.make_node("Reshape", ["p2", "shape"], ["flat"])] if reshape
            else [helper.make_node("Flatten", ["p2"], ["flat"], axis=1)])
    head = [helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["scores" if bias else "logits"], transB=1)]
    if bias:
        head.append(helper.make_node("Add", ["scores", "batch_bias"], ["logits"]))
    extra = [numpy_helper.from_array(np.array([FIXED_BATCH, 64], np.int64), "shape")] if reshape else []
    extra += [numpy_helper.from_array(np.zeros((FIXED_BATCH, 10), np.float32), "batch_bias")] if bias else []
    return _model(nodes=_features("input") + tail + head, inp=_value("input", [FIXED_BATCH, 1, 8, 8]),
                  out=_value("logits", [FIXED_BATCH, 10]), opset=11, initializers=_initializers(weights) + extra)


def global_max_pool(weights) -> onnx.ModelProto:
    """ONNX Runtime runs GlobalMaxPool; onnx2torch has no converter for it."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["input", "c1w", "c1b"], ["a1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("GlobalMaxPool", ["r1"], ["g"]),
             helper.make_node("Flatten", ["g"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "hw", "hb"], ["logits"], transB=1)]
    head = [numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "hw"),
            numpy_helper.from_array(np.zeros(10, np.float32), "hb")]
    return _model(nodes, _value("input", ["N", 1, 8, 8]), _value("logits", ["N", 10]), 13,
                  _initializers(weights)[:2] + head)


def opset18_export(weights) -> onnx.ModelProto:
    """What torch.onnx.export writes today: opset 18, Pad with its new optional inputs, a strided Slice with
    constant inputs, global average pooling as ReduceMean with axes as an input, Reshape with allowzero=1, a
    residual Add."""
    nodes = [helper.make_node("Conv", ["input", "c1w", "c1b"], ["a1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("Pad", ["r1", "pads", "zero"], ["padded"], mode="constant"),
             helper.make_node("Conv", ["padded", "c3w", "c3b"], ["a3"], kernel_shape=[3, 3]),
             helper.make_node("Add", ["a3", "r1"], ["residual"]),
             helper.make_node("Slice", ["residual", "starts", "ends", "slice_axes", "steps"], ["strided"]),
             helper.make_node("ReduceMean", ["strided", "axes"], ["pooled"], keepdims=0),
             helper.make_node("Reshape", ["pooled", "shape"], ["flat"], allowzero=1),
             helper.make_node("Gemm", ["flat", "hw", "hb"], ["logits"], transB=1)]
    rng = np.random.default_rng(1)
    extra = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.1, "c3w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "c3b"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
             numpy_helper.from_array(np.array([0, 1], np.int64), "starts"),
             numpy_helper.from_array(np.array([2**63 - 1, -1], np.int64), "ends"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "slice_axes"),
             numpy_helper.from_array(np.array([2, 1], np.int64), "steps"),
             numpy_helper.from_array(np.array([-1, 8], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "hw"),
             numpy_helper.from_array(np.zeros(10, np.float32), "hb")]
    return _model(nodes, _value("input", ["N", 1, 8, 8]), _value("logits", ["N", 10]), 18,
                  _initializers(weights)[:2] + extra)


# name -> (builder, CLI options, what ONNX Runtime is fed: (pixels (N, 8, 8)) -> file input, output kind)
FILES = {
    "a_opset8": (legacy_opset8, ["--pixel-scale", "255"], lambda p: p[:, None], "logits"),
    "b_nhwc_softmax": (channels_last_softmax, [], lambda p: ((p / 255 - 0.5) / 0.5)[..., None], "probabilities"),
    "c_dynamic": (dynamic_batch, [], lambda p: ((p / 255 - 0.25) / 0.25)[:, None], "log_probabilities"),
    "d_fixed16": (fixed_batch, [], lambda p: ((p / 255 - 0.5) / 0.5)[:, None], "logits"),
}


@pytest.fixture(scope="module")
def weights():
    return _train_weights()


@pytest.fixture(scope="module")
def files(weights, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, (build, *_rest) in FILES.items():
        paths[name] = folder / f"{name}.onnx"
        onnx.save(build(weights), str(paths[name]))
    paths["unconvertible"] = folder / "gmp.onnx"
    onnx.save(global_max_pool(weights), str(paths["unconvertible"]))
    paths["baked_reshape"] = folder / "baked.onnx"
    onnx.save(fixed_batch(weights, reshape=True), str(paths["baked_reshape"]))
    paths["legacy_view"] = folder / "legacy-view.onnx"
    onnx.save(legacy_view(weights), str(paths["legacy_view"]))
    paths["baked_bias"] = folder / "baked-bias.onnx"
    onnx.save(fixed_batch(weights, bias=True), str(paths["baked_bias"]))
    return paths


def _reference_probabilities(path: Path, feed: np.ndarray, kind: str) -> np.ndarray:
    """The file on ONNX Runtime, run directly: (N, 10) probabilities. A fixed-batch file gets batches of
    its size, the last one padded with zeros."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    size = inp.shape[0] if isinstance(inp.shape[0], int) else len(feed)
    outputs = []
    for start in range(0, len(feed), size):
        chunk = feed[start:start + size].astype(np.float32)
        padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)])
        outputs.append(session.run(None, {inp.name: padded})[0][:len(chunk)])
    out = torch.from_numpy(np.concatenate(outputs)).double()
    if kind == "logits":
        return torch.softmax(out, 1).numpy()
    return out.exp().numpy() if kind == "log_probabilities" else out.numpy()


def _run_dir(result) -> Path:
    assert result.code == 0, result.err
    return Path(re.search(r"run record: (\S+)", result.out).group(1))


def _check_against_runtime(name: str, path: Path, predictions_file: Path) -> np.ndarray:
    """The run's probabilities equal ONNX Runtime's on the same samples (1e-4), hence the same top-1."""
    _, _, feed, kind = FILES[name]
    pixels, labels = _digits()
    reference = _reference_probabilities(path, feed(pixels), kind)
    with np.load(predictions_file) as z:
        idx, probs = z["indices"], z["probs"]
    np.testing.assert_allclose(probs, reference[idx], atol=1e-4)
    assert (probs.argmax(1) == reference[idx].argmax(1)).all()
    return reference[idx].argmax(1) == labels[idx]


@pytest.mark.parametrize("name", list(FILES))
def test_eval_equals_onnx_runtime_run_directly(cli, run_root, files, name):
    _, options, _, kind = FILES[name]
    result = cli("eval", "--model", f"onnx:{files[name]}", "--data", "digits", "--device", "cpu", *options)
    run = _run_dir(result)
    said = "".join((result.out + result.err).split())  # the console wraps long lines
    layout = "NHWC" if name == "b_nhwc_softmax" else "NCHW"
    assert "".join(f"{files[name]}: {layout} input".split()) in said
    assert "".join(f"returns {kind.replace('_', '-')} (".split()) in said
    correct = _check_against_runtime(name, files[name], run / "predictions.npz")
    metrics = read_json(run / "metrics.json", "metrics")
    assert metrics["top1"] == pytest.approx(correct.mean(), abs=1e-12) and metrics["top1"] > 0.9
    model = metrics["model"]
    assert model["output"]["kind"] == kind and model["weights"] == "in the ONNX file"
    assert model["onnx"]["runs_on"].startswith("ONNX Runtime")
    assert model["onnx"]["layout"] == ("nhwc" if name == "b_nhwc_softmax" else "nchw")
    if name == "c_dynamic":
        assert model["mean"] == [0.25] and "metadata" in model["normalization_origin"]
    if name == "d_fixed16":
        assert model["onnx"]["batch"] == FIXED_BATCH and "padded" in model["onnx"]["fixed_batch_handling"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FILES))
def test_simulate_int8_and_fp8(cli, run_root, files, name):
    _, options, _, _ = FILES[name]
    run = _run_dir(cli("simulate", "--model", str(files[name]), "--data", "digits", "--device", "cpu",
                       "--format", "int8,fp8_e4m3", "--split", "test", *options))
    _check_against_runtime(name, files[name], run / "predictions.npz")  # FP32: the file on ONNX Runtime
    described = read_json(run / "metrics.json", "metrics")["model"]["onnx"]
    assert described["runs_on"].startswith("ONNX Runtime") and described["quantized_from"].startswith("its PyTorch")
    conversion = described["conversion"]
    assert conversion["max_abs_diff"] <= 1e-4 and conversion["top1_agreement"] == 1.0
    summary = read_json(run / "quantization" / "summary.json", "summary")
    fp32 = summary["fp32"]
    assert len(summary["formats"]) == 2
    for row in summary["formats"]:
        assert row["quantized_layers"] >= 3  # both convolutions and the classifier
        assert abs(row["top1"] - fp32["top1"]) < 0.03
        # a second softmax would flatten the confidence from ~0.95 to ~0.2
        assert abs(row["mean_confidence"] - fp32["mean_confidence"]) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FILES))
def test_bench(cli, run_root, files, weights, name):
    """ONNX Runtime and OpenVINO run the file's own graph (a file that fixes its batch size cannot serve
    every batch size: its PyTorch form is exported instead, and the backend says so)."""
    run = _run_dir(cli("bench", "--model", str(files[name]), "--data", "digits", "--backends",
                       "torch-fp32,ort-fp32,openvino-fp32", "--batch-sizes", "5", "--threads", "1", "--rounds", "1",
                       "--no-stages", *FILES[name][1]))
    report = read_json(run / "benchmark" / "benchmark.json", "benchmark")
    for backend in report["backends"]:
        assert backend["status"] == "ready", backend["reason"]
        assert backend["agreement"]["top1_agreement"] == 1.0
        assert backend["parameter_bytes"] >= 4 * sum(w.size for w in weights)  # Constant nodes' weights count
        if backend["name"] != "torch-fp32":
            first = backend["info"]["notes"][0]
            expected = "FP32 export verified" if name == "d_fixed16" else f"the ONNX file as it is ({files[name]})"
            assert first.startswith(expected) and "max |logit difference|" in first, first


def test_check_says_the_weights_are_in_the_file(cli, files):
    result = cli("eval", "--check", "--model", f"onnx:{files['a_opset8']}", "--data", "digits")
    assert result.code == 0 and "weights: in the ONNX file" in result.out and "random" not in result.out


def test_bench_on_synthetic_data_takes_classes_and_input_from_the_file(cli, run_root, files):
    run = _run_dir(cli("bench", "--model", str(files["d_fixed16"]), "--backends", "torch-fp32", "--batch-sizes",
                       "16", "--threads", "1", "--rounds", "1", "--no-stages", *FILES["d_fixed16"][1]))
    report = read_json(run / "benchmark" / "benchmark.json", "benchmark")
    assert report["backends"][0]["status"] == "ready", report["backends"][0]["reason"]


def test_an_operator_onnx2torch_cannot_convert_is_one_line_for_simulation(cli, run_root, files):
    result = cli("simulate", "--model", f"onnx:{files['unconvertible']}", "--data", "digits", "--device", "cpu")
    assert result.code == 2 and len(result.error_lines) == 1
    assert "GlobalMaxPool" in result.error_lines[0] and "Traceback" not in result.err
    # evaluation runs the file as it is, on ONNX Runtime
    assert cli("eval", "--model", f"onnx:{files['unconvertible']}", "--data", "digits", "--device", "cpu").code == 0


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_a_corrupt_file_is_one_line(cli, run_root, files, tmp_path, content):
    data = files["a_opset8"].read_bytes()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"\x00\xff" * 50, "empty": b""}[content])
    result = cli("eval", "--model", str(bad), "--data", "digits")
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert str(bad) in result.error_lines[0] and "Traceback" not in result.err
    assert re.search(r"not a (readable|valid) ONNX", result.error_lines[0])


def test_a_missing_file_and_an_unknown_reference(cli, run_root, tmp_path):
    missing = cli("eval", "--model", f"onnx:{tmp_path}/nowhere.onnx", "--data", "digits")
    assert missing.code == 2 and "does not exist" in missing.error_lines[0]
    unknown = cli("eval", "--model", "resnet21_cifar", "--data", "digits")
    assert unknown.code == 2 and len(unknown.error_lines) == 1
    for form in ("zoo name", "python:", "onnx:", "timm:", "torchvision:", "did you mean", "resnet20_cifar"):
        assert form in unknown.error_lines[0]
    with pytest.raises(UnknownNameError, match="write onnx:"):
        ModelRef.parse(str(Path(__file__)))  # an existing file that does not end in .onnx


def _load_proto(proto: onnx.ModelProto, folder: Path):
    path = folder / "model.onnx"
    onnx.save(proto, str(path))
    return load_onnx_file(path)


def test_layout_is_read_from_the_input_shape_or_the_first_transpose(files, weights, tmp_path):
    assert resolve_layout(load_onnx_file(files["b_nhwc_softmax"]), None)[0] == "nhwc"
    assert resolve_layout(load_onnx_file(files["a_opset8"]), None)[0] == "nchw"
    assert resolve_layout(load_onnx_file(files["a_opset8"]), "nhwc") == ("nhwc", "declared (model.input_layout)")
    # 3x3 images with 3 channels: the shape cannot tell, the Transpose to NCHW can
    ambiguous = channels_last_softmax(weights)
    for dim in ambiguous.graph.input[0].type.tensor_type.shape.dim[1:]:
        dim.dim_value = 3
    assert _load_proto(ambiguous, tmp_path).input.layout == "nhwc"


def test_the_opset8_file_converts_within_1e4_of_onnx_runtime(files):
    file = load_onnx_file(files["a_opset8"])
    assert file.opset == 8 and any(n.op_type == "Constant" for n in file.proto.graph.node)
    torch_form, opset = to_torch(file, "nchw")
    assert opset == 17
    pixels, _ = _digits()
    x = torch.from_numpy(pixels[:64, None].copy())
    reference = OnnxRuntimeModule(file, "nchw").raw_outputs(x)
    conversion = verify(torch_form, reference, x, str(file.path))
    assert conversion.max_abs_diff <= 1e-4 and conversion.top1_agreement == 1.0
    assert {type(m).__name__ for m in torch_form.modules()} >= {"Conv2d", "Linear"}
    # the stand-in torchvision that onnx2torch may have been imported with (`convert._torchvision_for_import`)
    # is gone: whatever imports torchvision next gets the real package or the real error
    assert all(sys.modules.get(name) is None or sys.modules[name].__spec__ is not None
               for name in ("torchvision", "torchvision.ops"))


def test_an_opset18_export_is_lowered_to_17_and_converts(weights, tmp_path):
    file = _load_proto(opset18_export(weights), tmp_path)
    torch_form, opset = to_torch(file, "nchw")
    assert opset == 17
    x = torch.randn(6, 1, 8, 8)
    conversion = verify(torch_form, OnnxRuntimeModule(file, "nchw").raw_outputs(x), x, str(file.path))
    assert conversion.max_abs_diff <= 1e-4
    kinds = {type(m).__name__ for m in torch_form.modules()}
    assert {"Add", "StaticSlice", "StaticReshape"} <= kinds  # quantlens's Add: quantized residuals
    torch.export.export(torch_form, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))  # exportable


def test_a_fixed_batch_is_padded_and_the_padding_dropped(files):
    file = load_onnx_file(files["d_fixed16"])
    module = OnnxRuntimeModule(file, "nchw")
    pixels, _ = _digits()
    x = torch.from_numpy(((pixels[:37, None] / 255 - 0.5) / 0.5).astype(np.float32))
    whole = module(x)  # batches of 16, 16 and 5 (+11 copies of the last sample)
    alone = torch.cat([module(x[i:i + 1]) for i in range(len(x))])  # one sample, padded to 16, each
    assert whole.shape == (37, 10)
    torch.testing.assert_close(whole, alone, rtol=0, atol=1e-5)


def test_a_batch_baked_into_a_reshape_is_freed_and_verified(files):
    file = load_onnx_file(files["baked_reshape"])
    pixels, _ = _digits()
    probe = torch.from_numpy(((pixels[:15, None] / 255 - 0.5) / 0.5).astype(np.float32))  # not a batch of 16
    opened = open_onnx_model(file, layout="nchw", layout_origin="test", declared_output=None, probe=probe,
                             num_classes=10, convert=True)
    assert opened.conversion.max_abs_diff <= 1e-4 and opened.conversion.top1_agreement == 1.0
    torch.testing.assert_close(opened.torch_form(probe[:3]), opened.runtime(probe[:3]), rtol=0, atol=1e-4)


def test_a_batch_baked_into_a_constant_is_refused_for_simulation(cli, run_root, files):
    assert cli("eval", "--model", str(files["baked_bias"]), "--data", "digits").code == 0
    result = cli("simulate", "--model", str(files["baked_bias"]), "--data", "digits", "--device", "cpu")
    assert result.code == 2 and len(result.error_lines) == 1
    line = result.error_lines[0]
    assert "PyTorch form" in line and "batch of 15" in line and "batch size baked into the graph" in line


@pytest.mark.parametrize("name", list(FILES))
def test_the_runtime_interface_file_runs_the_graph_as_it_is(files, name, tmp_path):
    """input `input` NCHW, output `logits` (log of probabilities): what quantlens's ONNX backends feed and read."""
    _, _, feed, kind = FILES[name]
    file = load_onnx_file(files[name])
    layout = resolve_layout(file, None)[0]
    path = write_runtime_file(file, layout, kind, tmp_path / "runtime.onnx")
    pixels, _ = _digits()
    nchw = feed(pixels[:FIXED_BATCH])
    nchw = np.ascontiguousarray(nchw.transpose(0, 3, 1, 2) if layout == "nhwc" else nchw, dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": nchw})
    reference = _reference_probabilities(files[name], feed(pixels[:FIXED_BATCH]), kind)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits).double(), 1).numpy(), reference, atol=1e-6)
    assert len(onnx.load(str(path)).graph.node) - len(file.proto.graph.node) <= 3  # the graph and the interface


def test_the_source_file_is_known_for_the_converted_module_only(files):
    file = load_onnx_file(files["b_nhwc_softmax"])
    pixels, _ = _digits()
    probe = torch.from_numpy(((pixels[:8, :, :, None] / 255 - 0.5) / 0.5).astype(np.float32)).permute(0, 3, 1, 2)
    opened = open_onnx_model(file, layout="nhwc", layout_origin="test", declared_output=None, probe=probe,
                             num_classes=10, convert=True)
    assert opened.output.kind == "probabilities" and opened.conversion.max_abs_diff <= 1e-4
    assert onnx_source_of(opened.torch_form) is opened
    assert onnx_source_of(copy.deepcopy(opened.torch_form)) is None  # a (quantized) copy is not the file
    # the PyTorch form returns log-probabilities, so the softmax every evaluation applies gives them back
    torch.testing.assert_close(torch.softmax(opened.torch_form(probe), 1), opened.runtime.raw_outputs(probe),
                               rtol=0, atol=1e-5)


def test_the_runtime_module_copies_and_pickles_without_its_session(files):
    module = OnnxRuntimeModule(load_onnx_file(files["c_dynamic"]), "nchw", "log_probabilities")
    x = torch.zeros(2, 1, 8, 8)
    expected = module(x)  # builds the session
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert clone._session is None
        torch.testing.assert_close(clone(x), expected)


def test_metadata_hints(files, weights, tmp_path):
    proto = fixed_batch(weights)
    helper.set_model_props(proto, {"Image.NominalPixelRange": "NominalRange_0_255", "output": "logits"})
    hints = _load_proto(proto, tmp_path).hints
    assert (hints.pixel_scale, hints.mean, hints.std, hints.output) == (255.0, (0.0,), (1.0,), "logits")
    assert load_onnx_file(files["c_dynamic"]).hints.mean == (0.25,)


def test_weights_and_training_are_refused_for_onnx_files(cli, run_root, files, tmp_path):
    checkpoint = tmp_path / "w.pt"
    torch.save({"x": torch.zeros(1)}, checkpoint)
    result = cli("eval", "--model", str(files["b_nhwc_softmax"]), "--data", "digits", "--weights", str(checkpoint))
    assert result.code == 2 and "carries its own weights" in result.error_lines[0]
    with pytest.raises(ModelError, match="does not exist"):
        load_onnx_file(tmp_path / "absent.onnx")


def test_load_onnx_gives_the_verified_pytorch_form_to_the_python_api(files):
    import quantlens
    from quantlens.errors import ConfigError

    pixels, labels = _digits()
    x = torch.from_numpy(((pixels[:, None] / 255 - 0.5) / 0.5).astype(np.float32))  # NCHW, for the NHWC file too
    module = quantlens.load_onnx(files["b_nhwc_softmax"], example=x[:16])
    result = quantlens.evaluate(module, torch.utils.data.TensorDataset(x, torch.from_numpy(labels)))
    reference = _reference_probabilities(files["b_nhwc_softmax"], x.permute(0, 2, 3, 1).numpy(), "probabilities")
    np.testing.assert_allclose(result.predictions.probs, reference, atol=1e-4)  # one softmax, not two
    with pytest.raises(ModelError, match="onnx2torch cannot convert operator GlobalMaxPool"):
        quantlens.load_onnx(files["unconvertible"], example=x[:16])
    with pytest.raises(ConfigError, match="example must be a float"):
        quantlens.load_onnx(files["c_dynamic"], example=x[0])
    with pytest.raises(ConfigError, match="layout 'hwc'"):
        quantlens.load_onnx(files["c_dynamic"], example=x[:4], layout="hwc")


def test_a_reshape_target_computed_from_shapes_becomes_a_constant_torch_export_can_follow(files):
    file = load_onnx_file(files["legacy_view"])
    pixels, _ = _digits()
    probe = torch.from_numpy(((pixels[:15, None] / 255 - 0.5) / 0.5).astype(np.float32))
    opened = open_onnx_model(file, layout="nchw", layout_origin="test", declared_output=None, probe=probe,
                             num_classes=10, convert=True)
    assert opened.conversion.max_abs_diff <= 1e-4
    kinds = {type(m).__name__ for m in opened.torch_form.modules()}
    assert not any("Shape" in kind or "Gather" in kind for kind in kinds), kinds  # the computation is gone
    exported = torch.export.export(opened.torch_form, (probe[:4],),
                                   dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.testing.assert_close(exported.module()(probe[:7]), opened.runtime(probe[:7]), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_export_writes_the_quantized_file_with_the_source_files_interface(cli, run_root, files, tmp_path):
    out = tmp_path / "nhwc-int8.onnx"
    result = cli("export", str(out), "--model", str(files["b_nhwc_softmax"]), "--data", "digits",
                 "--calibration-samples", "128")
    assert result.code == 0, result.err
    assert "takes 'image' NHWC and returns probabilities as 'probs'" in " ".join(result.out.split())
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and session.get_outputs()[0].name == "probs"
    pixels, labels = _digits()
    feed = ((pixels / 255 - 0.5) / 0.5)[..., None].astype(np.float32)  # (N, 8, 8, 1), as the source takes it
    (quantized,) = session.run(None, {"image": feed})
    np.testing.assert_allclose(quantized.sum(1), 1, atol=1e-5)  # probabilities, as the source returns
    original = _reference_probabilities(files["b_nhwc_softmax"], feed, "probabilities")
    assert (quantized.argmax(1) == original.argmax(1)).mean() > 0.97
