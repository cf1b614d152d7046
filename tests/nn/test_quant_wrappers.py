"""Fake-quant wrappers: conversion, calibration, caching, coverage of whole networks, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens.errors import ModelError, QuantlensError
from quantlens.models.build import build_model
from quantlens.nn import (
    QUANT_LAYERS,
    LayerPlan,
    QuantWrapper,
    TensorSpec,
    calibrate,
    dequantize_model,
    kind_of,
    quant_wrappers,
    quantize_model,
    recording,
)
from quantlens.nn import quantizer as quantizer_module
from quantlens.nn.compliance import check_compliance
from quantlens.nn.ops import Add, MatMul
from quantlens.recipes import QuantizationConfig, plan_layers

REQUIRED = ["Conv1d", "Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
            "ReLU", "ReLU6", "GELU", "SiLU", "Hardswish", "Sigmoid", "Tanh", "Softmax", "LayerNorm", "Add", "MatMul"]


def _quantized(model: nn.Module, batch: torch.Tensor, **cfg) -> nn.Module:
    q = quantize_model(model, plan_layers(model, QuantizationConfig(**cfg)).layers)
    calibrate(q, [batch])
    return q


def test_every_required_layer_type_is_registered():
    assert set(REQUIRED) <= set(QUANT_LAYERS.names())


def test_subclasses_find_their_base_kind():
    class MyConv(nn.Conv2d):
        pass

    assert kind_of(MyConv(1, 1, 1)).name == "Conv2d" and kind_of(nn.Identity()) is None


def test_caller_model_untouched_and_round_trip():
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    q = _quantized(model, x)
    assert not any(isinstance(m, QuantWrapper) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.inference_mode():
        assert not torch.equal(q(x), model(x))
        assert torch.equal(dequantize_model(q)(x), model(x))


def test_weights_are_quantized_once(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    q = _quantized(model, torch.randn(2, 3, 8, 8))
    calls = []
    original = quantizer_module.fake_quantize
    monkeypatch.setattr(quantizer_module, "fake_quantize", lambda x, *a, **k: calls.append(tuple(x.shape)) or
                        original(x, *a, **k))
    with torch.inference_mode():
        for _ in range(3):
            q(torch.randn(2, 3, 8, 8))
    weight_calls = [s for s in calls if s in ((8, 27), (4, 288))]
    assert weight_calls == []  # cached since calibration: no weight re-quantized in 3 forwards
    with torch.no_grad():  # a changed weight (optimiser step, load_state_dict) is quantized again
        q[0].module.weight.mul_(2)
    with torch.inference_mode():
        q(torch.randn(2, 3, 8, 8))
    assert (8, 27) in calls


def test_static_ranges_need_calibration():
    model = nn.Sequential(nn.Linear(4, 2))
    q = quantize_model(model, plan_layers(model, QuantizationConfig()).layers)
    with pytest.raises(QuantlensError, match="0 input 0: static ranges need calibration"):
        q(torch.randn(1, 4))


def test_nan_weights_reported_per_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match=r"1\.weight \(1 non-finite of 8\)"):
        quantize_model(model, plan_layers(model, QuantizationConfig()).layers)


@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3", "fp8_e5m2", "mxfp4", "nvfp4", "int4_asym", "fp6_e3m2"])
@pytest.mark.parametrize("name, size, options", [
    ("resnet20_cifar", 16, {}),
    ("mobilenet_v2", 32, {"width_mult": 0.25}),
    ("efficientnet_b0", 32, {}),
    ("vit_tiny", 16, {"depth": 1, "embed_dim": 48, "num_heads": 3}),
])
def test_whole_networks_quantize_and_comply(name, size, options, fmt):
    model = build_model(name, num_classes=5, in_channels=3, image_size=size, options=options).eval()
    x = torch.randn(2, 3, size, size)
    q = _quantized(model, x, format=fmt)
    with torch.inference_mode(), recording(q):
        y = q(x)
    assert torch.isfinite(y).all()
    report = check_compliance(q)
    assert report.compliant, [t for t in report.tensors if t.violations][:3]


def test_vit_attention_matmuls_and_softmax_are_quantized():
    model = build_model("vit_tiny", num_classes=3, in_channels=1, image_size=8,
                        options={"depth": 1, "embed_dim": 24, "num_heads": 2, "patch_size": 4}).eval()
    x = torch.randn(2, 1, 8, 8)
    q = _quantized(model, x, format="fp8_e4m3")
    with torch.inference_mode(), recording(q):
        q(x)
    checked = {(t.layer, t.tensor) for t in check_compliance(q).tensors}
    for expected in [("blocks.0.attn.matmul_qk", "input 0"), ("blocks.0.attn.matmul_qk", "input 1"),
                     ("blocks.0.attn.matmul_av", "input 1"), ("blocks.0.attn.softmax", "input 0"),
                     ("blocks.0.add_attn", "input 1"), ("blocks.0.attn.qkv", "weight")]:
        assert expected in checked


def test_planted_off_grid_value_is_caught():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    x = torch.randn(2, 1, 6, 6)
    q = _quantized(model, x, format="int8", norm={"mode": "tensor"}, outputs={"mode": "tensor"})
    with torch.inference_mode(), recording(q):
        q(x)
    assert check_compliance(q).compliant
    quantizer = q[1].param_quantizers["running_mean"]
    value, params = quantizer.record.last
    planted = value.clone()
    planted[2] += 1e-4  # between two grid points
    quantizer.record.last = (planted, params)
    report = check_compliance(q)
    assert report.violations == 1 and report.by_layer()["1"] == 1
    bad = [t for t in report.tensors if t.violations]
    assert bad[0].tensor == "running_mean" and 0 < bad[0].max_deviation < 1


def test_gradients_flow_straight_through():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    q = _quantized(model, torch.randn(16, 4), format="int4")
    q.train()
    loss = q(torch.randn(3, 4)).sum()
    loss.backward()
    grads = [w.module.weight.grad for _, w in quant_wrappers(q) if hasattr(w.module, "weight")]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_plan_selection_rules():
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16)
    plan = plan_layers(model, QuantizationConfig(
        quantize_first_layer=False, exclude=("layer3.*",),
        overrides=({"type": "Linear", "weights": {"format": "int4"}}, {"match": "layer2.0.*", "skip": True},
                   {"type": "ReLU", "inputs": {"mode": "tensor"}})))
    assert "conv1" in plan.skipped and "layer3.0.conv1" in plan.skipped
    assert plan.layers["linear"].weights.format.name == "int4"
    assert all(not n.startswith("layer2.0.") for n in plan.layers)
    assert plan.layers["relu"].inputs is not None  # grid-preserving, but explicitly asked for
    assert plan.layers["layer1.0.conv1"].inputs is not None
    assert plan.skipped["layer1.0.bn1"] == "nothing to quantize with these settings"  # BN folds into its conv


def test_block_mode_on_conv_weights_runs_along_fan_in():
    conv = nn.Conv2d(2, 3, 3)  # fan-in 18: one block of 16 and a ragged block of 2 per output channel
    q = quantize_model(nn.Sequential(conv), {"0": LayerPlan(weights=TensorSpec("nvfp4", "block"))})
    with torch.inference_mode(), recording(q):
        q[0].param_quantizers["weight"](conv.weight)
    value, params = q[0].param_quantizers["weight"].record.last
    assert value.shape == (3, 18) and params.scale.shape == (3, 2)


def test_residual_ops_quantize_both_inputs():
    add, matmul = Add(), MatMul()
    q = quantize_model(nn.ModuleDict({"add": add, "mm": matmul}),
                       {"add": LayerPlan(inputs=TensorSpec("int8", static=False)),
                        "mm": LayerPlan(inputs=TensorSpec("int8", static=False))})
    a, b = torch.randn(3, 4), torch.randn(4, 3)
    assert len(q["add"].input_quantizers) == 2 and len(q["mm"].input_quantizers) == 2
    assert not torch.equal(q["mm"](a, b), a @ b)


def test_overflow_mode_reaches_the_kernels():
    # Calibrated on small inputs, then fed a large one: E5M2 overflows to Inf only when asked to.
    model = nn.Sequential(nn.Linear(2, 2, bias=False)).eval()
    calibration = torch.full((1, 2), 1e-3)
    big = torch.full((1, 2), 1e6)
    with torch.inference_mode():
        saturating = _quantized(model, calibration, format="fp8_e5m2", weights={"mode": "none"})(big)
        overflowing = _quantized(model, calibration, format="fp8_e5m2", weights={"mode": "none"},
                                 overflow="inf_nan")(big)
    assert torch.isfinite(saturating).all() and not torch.isfinite(overflowing).all()


def test_input_ops_matmul_quantizes_only_dot_product_operands():
    resnet = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16)
    plan = plan_layers(resnet, QuantizationConfig(format="fp8_e4m3", input_ops="matmul"))
    assert plan.layers["conv1"].inputs is not None and plan.layers["linear"].inputs is not None
    assert plan.layers["layer1.0.conv1"].weights is not None
    assert "layer1.0.add" in plan.skipped and "avgpool" in plan.skipped  # residual add and pool stay float
    add_asked = QuantizationConfig(input_ops="matmul", overrides=({"type": "Add", "inputs": {"mode": "tensor"}},))
    asked = plan_layers(resnet, add_asked)
    assert asked.layers["layer1.0.add"].inputs is not None  # an override still turns them on
    vit = build_model("vit_tiny", num_classes=3, in_channels=1, image_size=8,
                      options={"depth": 1, "embed_dim": 24, "num_heads": 2, "patch_size": 4})
    plan = plan_layers(vit, QuantizationConfig(format="fp8_e4m3", input_ops="matmul"))
    assert plan.layers["blocks.0.attn.matmul_qk"].inputs is not None
    assert "blocks.0.attn.softmax" in plan.skipped and "blocks.0.add_attn" in plan.skipped
    assert QuantizationConfig(input_ops="matmul").label.endswith("in:matmul-only")
