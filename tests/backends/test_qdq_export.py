"""QDQ export of calibrated fake-quant models: a valid ONNX file holding quantlens's own scales and int8
weights, fused by ONNX Runtime into integer kernels, run by ONNX Runtime and OpenVINO at any batch size;
formats and operators it cannot express are refused in one line. Also the shared helpers of the
other test_qdq_* files (BN folding, the INT8 deployment plans, a small CNN)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.backends.base import BackendError
from quantlens.models.build import build_model
from quantlens.nn.convert import calibrate, quant_wrappers, quantize_model
from quantlens.nn.ops import Add
from quantlens.nn.spec import LayerPlan, TensorSpec

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from quantlens.backends.qdq import (  # noqa: E402  (after the optional-package checks)
    OpenVinoQdqRunner,
    OrtQdqRunner,
    export_qdq,
    ort_fusion,
    read_layer_map,
)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm2d into the Conv2d before it (module order), replace it by nn.Identity."""
    conv = None
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d):
            conv = module
        elif isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                s = module.weight / torch.sqrt(module.running_var + module.eps)  # (C,)
                conv.weight.mul_(s.view(-1, 1, 1, 1))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(module.running_mean)
                conv.bias = nn.Parameter((bias - module.running_mean) * s + module.bias)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def int8_plans(model: nn.Module) -> dict[str, LayerPlan]:
    """The INT8 deployment recipe: conv/linear int8 per-channel weights + int8_asym per-tensor inputs;
    Add: both inputs int8_asym per tensor; nothing else; outputs never quantized."""
    plans = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            plans[name] = LayerPlan(weights=TensorSpec("int8", mode="channel"),
                                    inputs=TensorSpec("int8_asym", mode="tensor"))
        elif isinstance(m, Add):
            plans[name] = LayerPlan(inputs=TensorSpec("int8_asym", mode="tensor"))
    return plans


class SmallCNN(nn.Module):
    """(B, 3, 16, 16) -> (B, 10): conv-relu, conv(stride 2)-relu, global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.r2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.r2(self.c2(self.r1(self.c1(x)))))))


def small_qmodel(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A calibrated SmallCNN (seeded) and its calibration batch (32, 3, 16, 16)."""
    torch.manual_seed(seed)
    model = SmallCNN().eval()
    x = torch.randn(32, 3, 16, 16)
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, [x[:16], x[16:]])
    return qmodel, x


def resnet20_qmodel(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """Random-init ResNet-20 with randomised BatchNorms folded, calibrated on 24 random images.

    Batches of 3: quantlens compiles its rounding kernels for tensors of 2^16 elements or more
    (seconds per build); 3 x 16 x 32 x 32 stays below, so these tests run eagerly and quickly."""
    torch.manual_seed(seed)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32)
    model = fold_batchnorm(randomize_batchnorm(model, seed).eval())
    x = torch.randn(24, 3, 32, 32)
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, x.split(3))
    return qmodel, x


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    qmodel, x = small_qmodel()
    result = export_qdq(qmodel, x, tmp_path_factory.mktemp("qdq") / "small.onnx")
    return qmodel, x, result


def test_small_cnn_file_is_valid_with_a_dynamic_batch_axis_and_described_by_its_result(small):
    _, _, result = small
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    data = result.path.read_bytes()
    assert result.size_bytes == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert not list(result.path.parent.glob(".*.tmp"))  # nothing half-written left behind
    assert result.not_exported == () and result.notes == ()
    assert set(read_layer_map(model)["layers"]) == {"c1", "c2", "fc"}


def test_weights_are_int8_codes_with_per_channel_scales_and_biases_int32(small):
    qmodel, _, result = small
    model = onnx.load(str(result.path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert result.int8_weights == 3 and result.int32_biases == 3
    assert result.quantize_nodes == 3  # image, c2 input, fc input
    assert result.dequantize_nodes == 3 + 3 + 3  # activations + weights + biases
    for name, wrapper in quant_wrappers(qmodel):
        weight = wrapper.module.weight
        codes = inits[f"{name}.weight_codes"]
        assert codes.dtype == np.int8 and codes.shape == tuple(weight.shape)
        assert not any(a.dtype == np.float32 and a.shape == tuple(weight.shape) for a in inits.values())
        # the stored codes dequantize to exactly the simulation's weight
        scale = inits[f"{name}.weight_scale"]
        assert scale.shape == (weight.shape[0],)
        simulated = wrapper.param_quantizers["weight"](weight).detach().numpy()
        back = codes.astype(np.float32) * scale.reshape((-1,) + (1,) * (codes.ndim - 1))
        np.testing.assert_array_equal(back, simulated)
        assert inits[f"{name}.bias_codes"].dtype == np.int32


def test_int8_asym_inputs_are_stored_as_uint8_with_zero_point_plus_128(small):
    qmodel, _, result = small
    model = onnx.load(str(result.path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    params = qmodel.c1.input_quantizers[0].params
    zp = inits["c1.input_qdq.0.zero_point"]
    assert zp.dtype == np.uint8 and int(zp) == int(params.zero_point.reshape(())) + 128
    assert float(inits["c1.input_qdq.0.scale"]) == float(params.scale.reshape(()))


def test_onnx_runtime_fuses_convs_whose_output_is_quantized_and_leaves_the_others_float(small):
    _, _, result = small
    fusion = ort_fusion(result.path)
    assert fusion.layer("c1").runtime_op == "QLinearConv"  # c1 -> relu -> Q (zero point 0: ReLU folded)
    # c2 -> relu -> average pool: no Q after it, so ONNX Runtime runs a float Conv+ReLU on DQ weights
    assert not fusion.layer("c2").integer and fusion.layer("c2").runtime_op in ("FusedConv", "Conv")
    assert fusion.layer("fc").runtime_op == "QGemm"  # integer GEMM with float output
    assert fusion.float_layers == ["c2"]


def test_runs_at_batch_1_and_5_on_onnx_runtime_and_openvino_close_to_the_simulation(small):
    # Tolerance: a code that rounds the other way (division vs reciprocal, integer requantization,
    # int32 bias) in the 16-value fc input moves a logit by x_scale * |w|, a few % of these small
    # random logits: mean |diff| <= 2% and max |diff| <= 15% of max |logit|; top-1 equal on all 64.
    qmodel, _, result = small
    torch.manual_seed(1)
    x = torch.randn(64, 3, 16, 16)
    with torch.no_grad():
        simulated = qmodel(x).numpy()
    scale = np.abs(simulated).max()
    runners = [OrtQdqRunner(result.path, precise=True)]
    if pytest.importorskip("openvino"):
        runners.append(OpenVinoQdqRunner(result.path))
    for runner in runners:
        for size in (1, 5):
            assert runner.run(x[:size]).shape == (size, 10)
        deployed = runner.run(x)
        assert (deployed.argmax(1) == simulated.argmax(1)).all()
        diff = np.abs(deployed - simulated)
        assert diff.mean() <= 0.02 * scale and diff.max() <= 0.15 * scale, (diff.mean() / scale, diff.max() / scale)


def test_quantizers_that_disagree_on_one_tensor_keep_separate_pairs_and_are_reported(tmp_path):
    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 4, 1)
            self.add = Add()

        def forward(self, x):
            return self.add(self.a(x), self.b(x)).mean((2, 3))

    model = Twin().eval()
    qmodel = quantize_model(model, {"a": int8_plans(model)["a"], "b": int8_plans(model)["b"]})
    x = torch.randn(8, 3, 8, 8)
    calibrate(qmodel, [x])
    q = qmodel.b.input_quantizers[0]
    from dataclasses import replace
    q.fix(replace(q.params, scale=q.params.scale * 1.5))
    result = export_qdq(qmodel, x, tmp_path / "twin.onnx")
    assert result.quantize_nodes == 2 and result.shared_pairs == 0
    assert len(result.notes) == 1 and "2 different scales" in result.notes[0]


@pytest.mark.parametrize("plan, message", [
    (LayerPlan(weights=TensorSpec("int8", mode="channel"), inputs=TensorSpec("fp8_e4m3", mode="tensor")),
     "c1 input 0: fp8_e4m3 is simulation only on ONNX Runtime CPU (QDQ export supports int8/uint8)"),
    (LayerPlan(weights=TensorSpec("int8", mode="channel"), inputs=TensorSpec("int4", mode="tensor")),
     "c1 input 0: int4 is simulation only on ONNX Runtime CPU"),
    (LayerPlan(weights=TensorSpec("fp8_e4m3", mode="channel"), inputs=TensorSpec("int8_asym")),
     "c1 weights: fp8_e4m3 is simulation only on ONNX Runtime CPU"),
    (LayerPlan(weights=TensorSpec("int8", mode="block", chunk_size=8), inputs=TensorSpec("int8_asym")),
     "c1 weights: per-block scales"),
])
def test_formats_onnx_runtime_cannot_run_as_integer_qdq_are_refused_in_one_line(tmp_path, plan, message):
    model = SmallCNN().eval()
    qmodel = quantize_model(model, {"c1": plan})
    calibrate(qmodel, [torch.randn(4, 3, 16, 16)])
    with pytest.raises(BackendError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        export_qdq(qmodel, torch.randn(2, 3, 16, 16), tmp_path / "refused.onnx")
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_uncalibrated_model_is_refused(tmp_path):
    model = SmallCNN().eval()
    qmodel = quantize_model(model, int8_plans(model))
    with pytest.raises(BackendError, match="c1 input 0: no calibrated static range"):
        export_qdq(qmodel, torch.randn(2, 3, 16, 16), tmp_path / "x.onnx")


def test_an_operator_the_exporter_cannot_convert_is_named(tmp_path):
    class Cumulative(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.cummax(self.conv(x), dim=-1).values.mean((2, 3))

    model = Cumulative().eval()
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, [torch.randn(4, 3, 8, 8)])
    with pytest.raises(BackendError, match=r"cannot convert operator aten\.cummax") as info:
        export_qdq(qmodel, torch.randn(2, 3, 8, 8), tmp_path / "cummax.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cummax.onnx").exists()
