"""Per-operator profiles: categories, float ops inside INT8 models, the side-by-side comparison."""

from __future__ import annotations

import pytest
import torch

from quantlens.backends import OpTiming, Target, get_backend, op_category
from quantlens.backends.base import OperatorProfile
from quantlens.backends.onnxruntime import parse_ort_profile
from quantlens.bench.profile import ProfileComparison, breakdown, compare_profiles, profile_runner
from quantlens.models.build import build_model


def op(op_type: str, *dtypes: str, seconds: float = 1e-3) -> OpTiming:
    return OpTiming(op_type=op_type, node="", seconds=seconds, calls=1, input_dtypes=dtypes, implementation="x")


@pytest.mark.parametrize(("timing", "category"), [
    (op("QLinearConv", "uint8", "float32", "uint8", "float32", "int8"), "int8"),
    (op("quantized::conv2d_relu"), "int8"),
    (op("ReduceMean", "float32", "int64"), "float"),
    (op("aten::pad", "float32"), "float"),
    (op("QuantizeLinear", "float32", "float32", "uint8"), "conversion"),
    (op("aten::dequantize", "uint8"), "conversion"),
    (op("aten::item", "float32"), "other"),
    (op("Slice", "uint8", "int64"), "int8"),
])
def test_operator_categories(timing, category):
    assert op_category(timing) == category


def test_parse_ort_profile_leaves_out_the_warm_run_and_merges():
    def node(ts, name, dtype, dur):
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": name, "provider": "CPUExecutionProvider", "input_type_shape": [{dtype: [1]}]}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, node(10, "Conv", "float", 50),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100}, node(210, "Conv", "float", 30),
              node(250, "Conv", "float", 20)]
    (timing,) = parse_ort_profile(events, skip_runs=1)
    assert timing.op_type == "Conv" and timing.calls == 2 and timing.input_dtypes == ("float32",)
    assert timing.seconds == pytest.approx(50e-6)


def test_breakdown_is_per_call_and_shares_add_up():
    profile = OperatorProfile("b", batch_size=4, runs=2, source="test",
                              ops=(op("Conv", "float32", seconds=6e-3), op("Relu", "float32", seconds=2e-3)))
    result = breakdown(profile, "fp32")
    assert result.total_seconds == pytest.approx(4e-3)
    assert sum(row.share for row in result.rows) == pytest.approx(1.0)
    assert [row.op_type for row in result.rows] == ["Conv", "Relu"] and result.rows[0].compute
    assert not result.is_int8 and result.float_rows() == ()


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16).eval()
    return model, torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_ort_int8_profile_lists_float_ops_and_explains(model_and_batch, tmp_path):
    model, batch = model_and_batch
    runners = {name: get_backend(name).prepare(model, batch[:2], [batch], tmp_path, Target("cpu", 1))
               for name in ("ort-fp32", "ort-int8")}
    fp32 = profile_runner(runners["ort-fp32"], batch, runs=2)
    int8 = profile_runner(runners["ort-int8"], batch, runs=2)
    assert not fp32.is_int8 and int8.is_int8
    assert {"ReduceMean", "Pad"} <= {row.op_type for row in int8.float_rows()}
    assert "QLinearConv" in {row.op_type for row in int8.rows if row.category == "int8"}
    assert int8.seconds_in("conversion") > 0
    comparison = compare_profiles(fp32, int8)
    text = " ".join(comparison.explanation)
    assert "convolutions and matrix products" in text and "runs in float inside the INT8 model" in text
    rows = {row.op_type: row for row in comparison.side_by_side()}
    assert rows["Conv"].baseline_seconds > 0 and rows["Conv"].candidate_seconds == 0
    assert rows["ReduceMean"].float_in_int8 and rows["ReduceMean"].category == "FLOAT inside INT8"
    assert comparison.to_dict()["candidate"]["float_ops_in_int8"]
    assert ProfileComparison.load(comparison.save(tmp_path / "profile.json")) == comparison


def test_torch_profiles_separate_quantized_from_float_ops(model_and_batch, tmp_path):
    model, batch = model_and_batch
    int8 = profile_runner(get_backend("torch-int8").prepare(model, batch[:2], [batch], tmp_path, Target("cpu", 1)),
                          batch, runs=1)
    categories = {row.op_type: row.category for row in int8.rows}
    assert categories["quantized::conv2d_relu"] == "int8"
    assert categories["aten::quantize_per_tensor"] == "conversion"
    assert "aten::pad" in {row.op_type for row in int8.float_rows()}
    fp32 = profile_runner(get_backend("torch-fp32").prepare(model, batch[:2], [], tmp_path, Target("cpu", 1)),
                          batch, runs=1)
    assert fp32.precision == "fp32" and "aten::conv2d" in {row.op_type for row in fp32.rows if row.compute}
