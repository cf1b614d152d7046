"""divide=True: x / scale as a true float32 division, rounded half to even, as ONNX Runtime's
QuantizeLinear computes it; the default x * (1 / scale) differs on near-ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.formats import get_format
from quantlens.scaling import PerTensor, fake_quantize, quantize, quantize_dequantize

F32 = np.float32
SCALES = [0.1, 0.0123, 1.0 / 3.0, 0.07, 0.0039215689]


def _near_ties(scale: float, count: int, seed: int) -> np.ndarray:
    """Values within a few ulps of (k + 0.5) * scale, k in int8's range, plus ordinary ones."""
    rng = np.random.default_rng(seed)
    k = rng.integers(-130, 130, count)
    ties = ((k + 0.5) * np.float64(scale)).astype(F32)
    nudged = ties.view(np.int32) + rng.integers(-3, 4, count).astype(np.int32)
    x = nudged.view(F32)
    return np.concatenate([x, (rng.standard_normal(count // 4) * 50 * scale).astype(F32)])


def _numpy_divide(x: np.ndarray, scale: float, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    q = np.clip(np.round(x.astype(F32) / F32(scale)) + zero_point, qmin, qmax).astype(F32)  # half to even
    return ((q - F32(zero_point)) * F32(scale)).astype(F32)



def _make(scale: float, zero_point: int):
    from quantlens.scaling import QuantParams

    return QuantParams(torch.tensor([scale], dtype=torch.float32), torch.tensor([zero_point], dtype=torch.int32),
                       torch.tensor(1.0), PerTensor())


@pytest.mark.parametrize("name, zero_point", [("int8", 0), ("int8_asym", -3), ("uint8", 128), ("int4", 0)])
@pytest.mark.parametrize("scale", SCALES)
def test_divide_matches_numpy_division_and_multiply_differs(name, zero_point, scale):
    fmt = get_format(name)
    x = _near_ties(scale, 20_000, seed=len(name))
    params = _make(scale, zero_point)
    got = fake_quantize(torch.from_numpy(x), fmt, params, divide=True).numpy()
    np.testing.assert_array_equal(got, _numpy_divide(x, scale, zero_point, fmt.qmin, fmt.qmax))
    codes = quantize(torch.from_numpy(x), fmt, params, divide=True).numpy()
    np.testing.assert_array_equal((codes - zero_point) * F32(scale), got)  # quantize agrees with fake_quantize
    if name in ("int8", "int8_asym", "uint8"):  # near ties inside the range: the reciprocal rounds some differently
        multiplied = fake_quantize(torch.from_numpy(x), fmt, params).numpy()
        assert (multiplied != got).sum() > 0


def test_quantize_dequantize_divides_per_channel_and_keeps_nan():
    g = torch.Generator().manual_seed(15)
    x = torch.randn(4, 1000, generator=g) * 3
    x[2, 5] = float("nan")
    from quantlens.scaling import PerChannel

    y = quantize_dequantize(x, "int8", PerChannel(0), divide=True)
    scale = (x.nan_to_num(0).abs().amax(1) / 127)
    scale[2] = float("nan")
    assert torch.isnan(y[2]).all() and torch.isfinite(y[[0, 1, 3]]).all()
    for c in (0, 1, 3):
        expected = _numpy_divide(x[c].numpy(), float(scale[c]), 0, -128, 127)
        np.testing.assert_array_equal(y[c].numpy(), expected)


def test_divide_is_refused_for_non_integer_formats():
    with pytest.raises(ConfigError, match="QuantizeLinear"):
        quantize_dequantize(torch.randn(8), "fp8_e4m3", divide=True)
    with pytest.raises(ConfigError, match="QuantizeLinear"):
        quantize_dequantize(torch.randn(64), "mxfp4", divide=True)


@pytest.mark.parametrize("qtype", ["int8", "uint8"])
def test_divide_matches_onnxruntime_quantize_linear(qtype):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    scale, zero_point = 0.0123, (5 if qtype == "int8" else 131)
    np_zp = np.array(zero_point, dtype=np.int8 if qtype == "int8" else np.uint8)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        initializer=[numpy_helper.from_array(np.array(scale, dtype=F32), "s"), numpy_helper.from_array(np_zp, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _near_ties(scale, 80_000, seed=16)  # 100k values, 80k of them near ties
    assert x.size == 100_000
    expected = session.run(None, {"x": x})[0]
    fmt = get_format("int8_asym" if qtype == "int8" else "uint8")
    got = fake_quantize(torch.from_numpy(x), fmt, _make(scale, zero_point), divide=True, path="eager").numpy()
    assert int((got != expected).sum()) == 0
    multiplied = fake_quantize(torch.from_numpy(x), fmt, _make(scale, zero_point), path="eager").numpy()
    assert int((multiplied != expected).sum()) > 0  # the reciprocal form does not match ORT
