"""Dynamic INT8 deployment (quantlens.backends.dynamic_int8): the simulation's activation quantizers are the
runtimes' (ONNX Runtime's DynamicQuantizeLinear, torchao's per-row int8) to the bit; the deployed models
carry quantlens's weight codes and agree with the simulation; impossible recipes are refused in one line.

Tolerances, and why (figures measured on an AVX2 EPYC without VNNI, ONNX Runtime 1.32, torch 2.13):
- Where every float operation between quantized layers is exact in both (Linear -> ReLU -> Linear), ONNX
  Runtime's logits equal the faithful simulation's bit for bit: tolerance 0.
- Through LayerNorm, GELU and softmax, ONNX Runtime's float kernels differ from torch's by an ulp here and
  there; a dynamic range that moves by an ulp can move a code by one step, so logits are not bit-exact. On
  the tiny ViT below: top-1 agreement 128/128 and max |logit diff| 4.8e-7 (simulation) / 1.3e-2 (faithful;
  one code step in block 0's fc2 input, propagated) at max |logit| 2.5. Asserted: top-1 agreement >= 0.97
  (at most 3 of 128 flips: each needs a code step *and* a near-tie of two logits) and max |diff| <= 0.05,
  2 % of the logit range, four times the largest one-step effect seen.
- torchao runs the same torch float operations as the faithful simulation: bit-exact, tolerance 0.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from quantlens.backends.base import BackendError, MissingPackageError, torch_threads  # noqa: E402
from quantlens.backends.dynamic_int8 import (  # noqa: E402
    check_dynamic_agreement,
    deploy_dynamic_int8,
    dynamic_int8_config,
    dynamic_linears,
    dynamic_quantize_uint8,
    export_ort_dynamic,
    faithful_model,
    get_target,
    ort_dynamic_fusion,
    plan_dynamic_int8,
    quantize_dynamic_int8,
    quantize_rows_int8_asym,
    torchao_available,
    torchao_model,
)
from quantlens.backends.dynamic_int8.ort_runtime import OrtDynamicRunner  # noqa: E402
from quantlens.models.zoo.vit import vit_tiny  # noqa: E402
from quantlens.nn import quantize_model  # noqa: E402
from quantlens.nn.convert import quant_wrappers  # noqa: E402
from quantlens.recipes.planning import plan_layers  # noqa: E402
from quantlens.recipes.quantization import QuantizationConfig  # noqa: E402

needs_torchao = pytest.mark.skipif(not torchao_available(), reason="torchao (>= 0.18) is not importable")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny matrices: one thread is fastest, and a shared machine's OpenMP spin-waits are avoided
    with torch_threads(1):
        yield


def _reinit(model: nn.Module, seed: int) -> nn.Module:
    """Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1): logits of order one (the default ViT init
    gives logits of order 1e-2, where top-1 is decided by noise)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / module.in_features ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
    return model.eval()


def mlp() -> nn.Module:
    return _reinit(nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)), seed=0)


def tiny_vit() -> nn.Module:
    model = vit_tiny(num_classes=10, in_channels=1, image_size=8, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    _reinit(model, seed=0)
    with torch.no_grad():
        model.pos_embed.copy_(torch.randn(model.pos_embed.shape, generator=torch.Generator().manual_seed(1)))
    return model


def batches(n: int = 8, size: int = 16, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 1, 8, 8, generator=g) for _ in range(n)]


def ort_dynamic_quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32, np.uint8]:
    """ONNX Runtime's own DynamicQuantizeLinear on x: (codes, scale, zero point)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info(n, t, None) for n, t in
                               (("q", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, s, z = session.run(None, {"x": x})
    return q, s, z


def adversarial_tensors() -> list[torch.Tensor]:
    """Seeded (B, N, K) tensors: mixed signs, one-signed, quarter-step values (ties), constants, zeros."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(40):
        x = torch.randn(int(torch.randint(1, 9, (1,), generator=g)), 5, 24, generator=g) * (0.01 + 5 * i / 40)
        x = x + float(torch.randn((), generator=g))
        if i % 4 == 1:
            x = torch.relu(x)
        elif i % 4 == 2:
            x = -torch.relu(x)
        elif i % 4 == 3:
            x = torch.round(x * 4) / 4
        out.append(x)
    return [*out, torch.zeros(2, 3, 24), torch.full((2, 3, 24), 0.7), torch.full((1, 1, 24), -3.0)]


# ------------------------------------------------------------------------------------ the recipes


def test_ort_recipe_is_uint8_per_tensor_dynamic_dividing_and_round_trips():
    model = tiny_vit()
    cfg = dynamic_int8_config(model, "onnxruntime")
    assert QuantizationConfig.model_validate(cfg.model_dump()) == cfg
    assert [o.type for o in cfg.overrides] == ["Conv2d", "MatMul"] and all(o.skip for o in cfg.overrides)
    plan = plan_dynamic_int8(model, cfg)
    assert sorted(plan.layers) == sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    spec = plan.layers["head"].inputs
    assert (spec.format.name, spec.mode, spec.static, spec.divide) == ("uint8", "tensor", False, True)
    assert plan.layers["head"].weights.format.name == "int8" and plan.layers["head"].weights.mode == "channel"


def test_simulated_input_quantizer_is_onnxruntime_dynamic_quantize_linear_bit_for_bit():
    qmodel = quantize_dynamic_int8(nn.Sequential(nn.Linear(24, 4)), "onnxruntime")
    (_, wrapper), = quant_wrappers(qmodel)
    quantizer = wrapper.input_quantizers[0]
    for x in adversarial_tensors():
        q, s, z = ort_dynamic_quantize(x.numpy())
        expected = (torch.from_numpy(q.astype(np.float32)) - float(z)) * float(s)
        assert torch.equal(quantizer(x), expected)
        codes, scale, zero_point = dynamic_quantize_uint8(x)  # the faithful model's own quantizer
        assert float(scale) == float(s) and float(zero_point) == float(z)
        assert np.array_equal(codes.numpy().astype(np.uint8), q)


@needs_torchao
def test_simulated_row_quantizer_is_torchao_per_row_int8_bit_for_bit():
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quant_primitives import MappingType
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

    qmodel = quantize_dynamic_int8(nn.Sequential(nn.Linear(24, 4)), "torchao")
    (_, wrapper), = quant_wrappers(qmodel)
    quantizer = wrapper.input_quantizers[0]
    for x in adversarial_tensors():
        own = Int8Tensor.from_hp(x, PerRow(), mapping_type=MappingType.ASYMMETRIC)
        expected = (own.qdata.float() - own.zero_point.float()) * own.scale
        assert torch.equal(quantizer(x), expected)
        codes, scale, zero_point = quantize_rows_int8_asym(x)  # the faithful model's
        assert torch.equal(codes, own.qdata.float()) and torch.equal(scale, own.scale)
        assert torch.equal(zero_point, own.zero_point.float())


# ------------------------------------------------------------------------------------ ONNX Runtime


@pytest.fixture(scope="module")
def mlp_exports(tmp_path_factory):
    qmodel = quantize_dynamic_int8(mlp(), "onnxruntime")
    folder = tmp_path_factory.mktemp("dyn-mlp")
    example = batches(1)[0]
    return qmodel, {dtype: export_ort_dynamic(qmodel, example, folder / f"{dtype}.onnx", weight_dtype=dtype)
                    for dtype in ("int8", "uint8")}


@pytest.mark.parametrize("weight_dtype", ["int8", "uint8"])
def test_ort_runs_every_linear_as_dynamic_quantize_matmul_with_quantlens_codes(mlp_exports, weight_dtype):
    import onnx
    from onnx import numpy_helper

    qmodel, exports = mlp_exports
    result = exports[weight_dtype]
    fusion = ort_dynamic_fusion(result.path)
    assert fusion.layers == {"1": "DynamicQuantizeMatMul", "3": "DynamicQuantizeMatMul"}
    assert fusion.op_counts.get("MatMul", 0) == 0 and fusion.op_counts.get("Gemm", 0) == 0
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(result.path)).graph.initializer}
    for layer in dynamic_linears(qmodel, "onnxruntime"):
        codes = stored[result.layers[layer.name]].astype(np.int16).T  # (O, K)
        offset = 128 if weight_dtype == "uint8" else 0
        assert np.array_equal(codes - offset, layer.codes.numpy())
        assert np.array_equal(stored[f"{layer.name}.weight_scale"], layer.scale.numpy())
    assert not any(t.dtype == np.float32 and t.shape in ((48, 64), (64, 48)) for t in stored.values())


@pytest.mark.parametrize("weight_dtype", ["int8", "uint8"])
def test_ort_logits_equal_the_faithful_simulation_bit_for_bit_through_relu(mlp_exports, weight_dtype):
    qmodel, exports = mlp_exports
    runner = OrtDynamicRunner(exports[weight_dtype].path)  # int8 weights: exact kernels when the CPU lacks VNNI
    faithful = faithful_model(qmodel, "onnxruntime", weight_dtype=weight_dtype)
    simulated_agree = 0
    for x in batches():
        deployed = runner.run(x)
        with torch.no_grad():
            assert np.array_equal(deployed, faithful(x).numpy())
            simulated = qmodel(x).numpy()
        simulated_agree += int((deployed.argmax(1) == simulated.argmax(1)).sum())
        assert np.abs(deployed - simulated).max() <= 1e-5 * np.abs(simulated).max()  # float summation order only
    assert simulated_agree == 8 * 16


@pytest.fixture(scope="module")
def vit_ort(tmp_path_factory):
    qmodel = quantize_dynamic_int8(tiny_vit(), "onnxruntime")
    deployment = deploy_dynamic_int8(qmodel, "onnxruntime", example_input=batches(1)[0],
                                     folder=tmp_path_factory.mktemp("dyn-vit"))
    return qmodel, deployment


def test_tiny_vit_on_ort_agrees_with_the_simulation(vit_ort):
    qmodel, deployment = vit_ort
    assert deployment.details["ort_fusion"]["float_layers"] == []
    assert len(deployment.details["ort_fusion"]["integer_layers"]) == 9  # 2 blocks x 4 Linear + head
    labels = [torch.arange(16) % 10 for _ in range(8)]
    report = check_dynamic_agreement(qmodel, deployment, batches(), labels=labels, float_model=tiny_vit())
    figures = report.to_dict()
    assert figures["samples"] == 128
    for against in ("deployed_vs_simulated", "deployed_vs_faithful"):
        assert figures[against]["top1_agreement"] >= 0.97
        assert figures[against]["max_abs_logit_diff"] <= 0.05
    assert set(figures["top1_accuracy"]) == {"deployed", "simulated", "faithful", "float"}
    paired = figures["paired_top1"]["deployed_minus_simulated"]
    assert paired["n"] == 128 and paired["ci"][0] <= paired["delta"] <= paired["ci"][1]


def test_ort_deployment_needs_an_example_input_and_a_folder(vit_ort):
    qmodel, _ = vit_ort
    with pytest.raises(BackendError, match="needs example_input"):
        deploy_dynamic_int8(qmodel, "onnxruntime")


# ------------------------------------------------------------------------------------ torchao


@needs_torchao
def test_torchao_carries_quantlens_codes_and_equals_the_faithful_simulation():
    model = tiny_vit()
    qmodel = quantize_dynamic_int8(model, "torchao")
    deployment = deploy_dynamic_int8(qmodel, "torchao")
    layers = dynamic_linears(qmodel, "torchao")
    torchao = deployment.runner.deployment
    for layer in layers:
        weight = torchao.model.get_submodule(layer.name).weight
        assert torch.equal(weight.qdata, layer.codes) and torch.equal(weight.scale.reshape(-1), layer.scale)
    # torchao's own symmetric weight scale is amax / 127.5: left alone, it would store other codes
    assert sum(torchao.codes_changed.values()) > 0
    report = check_dynamic_agreement(qmodel, deployment, batches()).to_dict()
    assert report["deployed_vs_faithful"]["logits_bit_exact"] == 1.0
    assert report["deployed_vs_simulated"]["top1_agreement"] >= 0.97
    assert report["deployed_vs_simulated"]["max_abs_logit_diff"] <= 0.05


def test_torchao_missing_is_one_line_with_the_install_command(monkeypatch):
    qmodel = quantize_dynamic_int8(mlp(), "torchao")
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # import torchao.quantization -> ImportError
    with pytest.raises(MissingPackageError, match="pip install 'quantlens\\[torchao\\]'"):
        torchao_model(qmodel)


# ------------------------------------------------------------------------------------ refusals


def _plans(model: nn.Module, **changes) -> dict:
    cfg = dynamic_int8_config(model, "onnxruntime")
    return plan_layers(model, cfg.model_copy(update=changes)).layers


@pytest.mark.parametrize(("change", "message"), [
    ({"inputs": {"format": "uint8", "observer": "max"}}, "static activation observer 'max'.*observer: dynamic"),
    ({"inputs": {"format": "int8", "observer": "dynamic"}}, "inputs in int8; .*uint8 per tensor"),
    ({"inputs": {"format": "uint8", "mode": "channel", "observer": "dynamic"}}, "one scale per input tensor"),
    ({"inputs": {"mode": "none"}}, "inputs are not quantized"),
    ({"weights": {"format": "fp8_e4m3", "mode": "channel"}}, "fp8_e4m3 weights have no dynamic INT8 form"),
    ({"weights": {"format": "uint8", "mode": "channel"}}, "uint8 weights have no dynamic INT8 form"),
    ({"weights": {"format": "int8", "mode": "block", "block_size": 16}}, "per-block weight scales"),
    ({"weights": {"mode": "none"}}, "weights are not quantized"),
    ({"outputs": {"format": "uint8", "mode": "tensor", "observer": "dynamic"}}, "quantized outputs"),
    ({"simulation": "fake_quant"}, "divides x / scale; the simulation does not.*simulation: deployment"),
])
def test_layers_the_onnxruntime_target_cannot_run_are_refused_in_one_line(change, message):
    model = mlp()
    cfg = dynamic_int8_config(model, "onnxruntime")
    values = cfg.model_dump()
    for key, value in change.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    qmodel = quantize_model(model, plan_layers(model, QuantizationConfig.model_validate(values)).layers)
    with pytest.raises(BackendError, match=message) as error:
        dynamic_linears(qmodel, "onnxruntime")
    assert "\n" not in str(error.value)


def test_torchao_target_needs_rows_at_least_as_long_as_each_input():
    model = mlp()
    values = dynamic_int8_config(model, "torchao").model_dump()
    values["inputs"]["block_size"] = 32  # the first Linear has 64 inputs
    qmodel = quantize_model(model, plan_layers(model, QuantizationConfig.model_validate(values)).layers)
    with pytest.raises(BackendError, match="one scale per row of 64 inputs .*block_size >= 64"):
        dynamic_linears(qmodel, "torchao")
    with pytest.raises(BackendError, match="inputs in int8_asym; ONNX Runtime"):
        dynamic_linears(quantize_dynamic_int8(model, "torchao"), "onnxruntime")


def test_quantized_convolutions_unquantized_models_and_unknown_targets_are_refused():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10)).eval()
    values = dynamic_int8_config(model, "onnxruntime").model_dump()
    values["overrides"] = []  # quantize the convolution too
    qmodel = quantize_model(model, plan_layers(model, QuantizationConfig.model_validate(values)).layers)
    with pytest.raises(BackendError, match="0: a quantized Conv2d; dynamic INT8 deploys Linear layers only"):
        dynamic_linears(qmodel, "onnxruntime")
    with pytest.raises(BackendError, match="has no quantized layer"):
        dynamic_linears(mlp(), "onnxruntime")
    with pytest.raises(BackendError, match="unknown dynamic INT8 target 'tensorrt'"):
        get_target("tensorrt")
    with pytest.raises(BackendError, match="has none"):
        dynamic_int8_config(nn.Sequential(nn.Conv2d(1, 4, 3)), "onnxruntime")
