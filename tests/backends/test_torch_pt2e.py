"""PyTorch x86 INT8 through torchao's pt2e flow and inductor, with quantlens's own scales: every quantize node
carries the scale and zero point quantlens calibrated (int8_asym -> u8, zero point + 128), every int8 weight
equals quantlens's codes, the compiled model agrees with the fake-quant simulation, formats x86 cannot run are
refused in one line, and torchao's warnings stay out of the user's output.

Two models, each compiled once (module-scoped fixtures): a small residual net (conv-relu, conv + add, pooling,
linear; ResNet-20's pattern) through `pt2e_model`, and the zoo's compact_cnn on a one-channel 28x28 input
(PneumoniaMNIST's shape; its stem convolution failed to compile with a dynamic batch) through `Pt2eRunner`,
which saves the .pt2 file, reads it back and compiles what it read."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.backends.base import BackendError
from quantlens.models.build import build_model
from quantlens.nn.convert import calibrate, quant_wrappers, quantize_model
from quantlens.nn.ops import Add
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes.registry import apply_pass

try:
    from quantlens.backends.pt2e import (
        SKIP_SO_ENV,
        Pt2eRunner,
        check_pt2e,
        load_pt2e,
        pt2e_model,
        quantize_nodes,
        save_pt2e,
        torchao_available,
        weight_codes,
    )
    from quantlens.backends.pt2e import flow as pt2e_flow
    from quantlens.backends.pt2e.channel_pad import split_padding
    from quantlens.backends.pt2e.inductor import kernel_counters
    _AVAILABLE = torchao_available()
except ImportError:  # pragma: no cover
    _AVAILABLE = False

pytestmark = pytest.mark.skipif(not _AVAILABLE, reason="torchao (>= 0.18) is not importable: "
                                "pip install 'quantlens[torchao]'")


class ResidualNet(nn.Module):
    """(B, 3, 12, 12) -> (B, 10): conv-bn-relu, conv-bn, residual add, relu, global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.add = Add()
        self.r2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.r1(self.bn1(self.c1(x)))
        return self.fc(self.flatten(self.pool(self.r2(self.add(self.bn2(self.c2(y)), y)))))


def int8_plans(model: nn.Module, activations: str = "int8_asym", weights: str = "int8") -> dict[str, LayerPlan]:
    plans = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            plans[name] = LayerPlan(weights=TensorSpec(weights, mode="channel"),
                                    inputs=TensorSpec(activations, mode="tensor"))
        elif isinstance(m, Add):
            plans[name] = LayerPlan(inputs=TensorSpec(activations, mode="tensor"))
    return plans


def folded_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ResidualNet().eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(8, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(8, generator=g) + 0.5)
                m.weight.copy_(torch.rand(8, generator=g) + 0.5)
                m.bias.copy_(torch.randn(8, generator=g) * 0.1)
    return apply_pass("fold_bn", model).model


@pytest.fixture(scope="module")
def deployed():
    model = folded_model()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    qmodel = quantize_model(model, int8_plans(model))
    x = torch.randn(64, 3, 12, 12)
    calibrate(qmodel, x.split(16))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    root = logging.getLogger()
    root.addHandler(handler)
    freezing, env = torch._inductor.config.freezing, os.environ.get(SKIP_SO_ENV)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            deployment = pt2e_model(qmodel, x)
    finally:
        root.removeHandler(handler)
    settings = (torch._inductor.config.freezing == freezing, os.environ.get(SKIP_SO_ENV) == env)
    return qmodel, deployment, list(caught), records, settings


def test_every_quantize_node_carries_quantlens_scale_and_zero_point_plus_128(deployed):
    qmodel, deployment, _, _, _ = deployed
    wrappers = dict(quant_wrappers(qmodel))
    seen = set()
    for q in quantize_nodes(deployment.graph_module):
        assert q["dtype"] == torch.uint8
        for path, _op, pos in q["consumers"]:
            if path in wrappers:
                params = wrappers[path].input_quantizers[pos].params
                assert q["scale"] == float(params.scale.reshape(())), (path, pos)  # exactly, not approximately
                assert q["zero_point"] == int(params.zero_point.reshape(())) + 128, (path, pos)
                seen.add(f"{path} input {pos}")
    expected = {f"{name} input {i}" for name, w in wrappers.items() for i in range(len(w.input_quantizers))}
    assert seen == expected  # every quantlens input quantizer is a quantize node of the deployed graph
    by_tensor = {t.tensor: t for t in deployment.tensors}
    for where in expected:
        params = wrappers[where.split(" ")[0]].input_quantizers[int(where[-1])].params
        assert by_tensor[where].scale == float(params.scale.reshape(()))
        assert by_tensor[where].source.startswith("quantlens")
    # pt2e's quantizer leaves the conv output entering the residual add float; quantlens quantizes it
    assert by_tensor["add input 0"].source == "quantlens (inserted)"
    # pt2e would quantize the pooling's input with the linear's input params (shared): not exact, left float
    assert by_tensor["pool (adaptive_avg_pool2d) input 0"].source == "float"
    assert any("pool" in note and "left float" in note for note in deployment.notes)


def test_int8_weights_equal_quantlens_codes_with_its_per_channel_scales(deployed):
    qmodel, deployment, _, _, _ = deployed
    codes = weight_codes(deployment.graph_module)
    assert set(deployment.weights) == set(codes) == {"c1", "c2", "fc"}
    for name, wrapper in quant_wrappers(qmodel):
        if name not in codes:
            continue
        weight = wrapper.module.weight
        pq = wrapper.param_quantizers["weight"]
        scale = pq.params_for(weight).scale.reshape(-1)
        stored, stored_scale = codes[name]
        assert stored.dtype == torch.int8 and stored.shape == weight.shape
        assert torch.equal(torch.as_tensor(stored_scale).float(), scale.float())
        simulated = pq(weight).detach()
        back = stored.float() * scale.view(-1, *([1] * (weight.dim() - 1)))
        assert torch.equal(back, simulated)
        assert int(stored.abs().max()) <= 127


def test_compiled_model_agrees_with_the_fake_quant_simulation(deployed):
    qmodel, deployment, _, _, _ = deployed
    assert deployment.int8_kernels, "inductor lowered no INT8 convolution/linear"
    assert any(k.startswith("qconv") for k in deployment.int8_kernels)
    assert any(k.startswith("qlinear") for k in deployment.int8_kernels)
    torch.manual_seed(1)
    x = torch.randn(320, 3, 12, 12)
    agreement = check_pt2e(deployment, qmodel, x.split(64))
    assert agreement.images == 320
    assert agreement.top1_agreement >= 0.99, agreement
    # integer requantization and fused kernels round a few codes the other way
    assert agreement.mean_abs_diff <= 0.02 * agreement.max_abs_logit, agreement
    assert deployment.run(x[:5]).shape == (5, 10)


def test_process_settings_restored_and_no_warnings_or_log_lines_reach_the_user(deployed):
    _, deployment, caught, records, settings = deployed
    assert settings == (True, True)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in records if r.name.startswith(("torch", "torchao"))] == []
    freezing = torch._inductor.config.freezing
    deployment.run(torch.randn(4, 3, 12, 12))
    assert torch._inductor.config.freezing == freezing


def test_importing_torchao_through_quantlens_prints_nothing():
    code = ("import os; from quantlens.backends.pt2e import load_torchao, SKIP_SO_ENV; load_torchao(); "
            "assert SKIP_SO_ENV not in os.environ")
    env = {k: v for k, v in os.environ.items() if k != SKIP_SO_ENV}
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


@pytest.mark.parametrize(("activations", "weights", "where", "words"), [
    ("fp8_e4m3", "int8", "c1 input 0", "fp8_e4m3 is simulation only on PyTorch x86"),
    ("int4", "int8", "c1 input 0", "int4 is simulation only on PyTorch x86"),
    ("int8_asym", "fp8_e4m3", "c1 weight", "fp8_e4m3 is simulation only on PyTorch x86"),
    ("int8_asym", "uint8", "c1 weight", "asymmetric or unsigned"),
])
def test_formats_x86_int8_cannot_run_are_refused_in_one_line(activations, weights, where, words):
    model = folded_model()
    qmodel = quantize_model(model, int8_plans(model, activations, weights))
    with pytest.raises(BackendError) as info:
        pt2e_model(qmodel, torch.randn(2, 3, 12, 12))
    message = str(info.value)
    assert "\n" not in message and message.startswith(where) and words in message


def test_per_block_weight_scales_are_refused_in_one_line():
    model = folded_model()
    plans = int8_plans(model)
    plans["c2"] = LayerPlan(weights=TensorSpec("mxint8", mode="block"), inputs=TensorSpec("int8_asym"))
    qmodel = quantize_model(model, plans)
    with pytest.raises(BackendError, match=r"^c2 weight: .*simulation only") as info:
        pt2e_model(qmodel, torch.randn(2, 3, 12, 12))
    assert "\n" not in str(info.value)


def test_uncalibrated_model_is_refused():
    model = folded_model()
    qmodel = quantize_model(model, int8_plans(model))
    with pytest.raises(BackendError, match="no calibrated static range"):
        pt2e_model(qmodel, torch.randn(2, 3, 12, 12))


# ----------------------------------------------------------------------------------------------- compact_cnn


def compact_cnn_qmodel(weights: str = "int7") -> nn.Module:
    """The zoo's compact_cnn for PneumoniaMNIST's shape (B, 1, 28, 28) -> (B, 2), BN folded, seeded weights,
    calibrated on seeded noise. 7-bit weights: oneDNN's u8 x s8 kernels cannot saturate them on CPUs without VNNI."""
    torch.manual_seed(0)
    model = build_model("compact_cnn", num_classes=2, in_channels=1, image_size=28).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)  # the zoo's init (std 0.01) gives logits of ~0.01; ~1 here
    folded = apply_pass("fold_bn", model).model
    qmodel = quantize_model(folded, int8_plans(folded, weights=weights))
    calibrate(qmodel, torch.randn(128, 1, 28, 28).split(32))
    return qmodel


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    qmodel = compact_cnn_qmodel()
    path = tmp_path_factory.mktemp("pt2e") / "compact_cnn.int8.pt2"
    threads = torch.get_num_threads()
    runner = Pt2eRunner(qmodel, torch.randn(64, 1, 28, 28), path, threads=1)
    return qmodel, runner, path, threads


def test_compact_cnn_one_channel_stem_compiles_to_int8_kernels(compact):
    _, runner, _, _ = compact
    # every conv (6, ReLU fused) and the classifier run as oneDNN INT8 kernels
    assert runner.int8_kernels == {"qconv_unary": 6, "qlinear_unary": 1}
    assert runner.deployment.padded_inputs == ["features.0.0"]
    assert any(note.startswith("features.0.0: its single input channel") for note in runner.deployment.notes)
    record = json.loads(json.dumps(runner.to_dict()))  # what a run record stores
    assert record["sha256"] == runner.sha256 and record["padded_inputs"] == ["features.0.0"]
    assert {t["tensor"] for t in record["tensors"]} >= {"features.0.0 input 0", "classifier input 0"}


def test_compact_cnn_runs_every_batch_size_on_one_compilation_and_restores_threads(compact):
    _, runner, _, threads = compact
    x = torch.randn(64, 1, 28, 28)
    before = kernel_counters()
    for size in (64, 5, 1):
        logits = runner.run(x[:size])
        assert isinstance(logits, np.ndarray) and logits.dtype == np.float32 and logits.shape == (size, 2)
    assert runner.run(x[:3].numpy()).shape == (3, 2)
    assert kernel_counters() == before  # nothing compiled again (a recompilation lowers its kernels again)
    assert torch.get_num_threads() == threads


def test_compact_cnn_deployed_logits_agree_with_the_simulation(compact):
    qmodel, runner, _, _ = compact
    torch.manual_seed(2)
    agreement = check_pt2e(runner, qmodel, torch.randn(192, 1, 28, 28).split(64))
    assert agreement.images == 192
    # Tolerance: the fused kernels requantize each convolution's output in one rounding where the simulation
    # computes in float and quantizes at the next layer's input, so a code can differ by one and, rarely, a top-1
    # near-tie flips (pretrained ResNet-20, 7-bit weights: 2 of 1,984 CIFAR images); logits within 2% of range.
    assert agreement.top1_agreement >= 0.99, agreement
    assert agreement.mean_abs_diff <= 0.02 * agreement.max_abs_logit, agreement


def test_compact_cnn_stem_weight_is_quantlens_codes_beside_a_zero_channel(compact):
    qmodel, runner, _, _ = compact
    wrapper = dict(quant_wrappers(qmodel))["features.0.0"]
    weight = wrapper.module.weight  # (48, 1, 3, 3)
    stored, scale = weight_codes(runner.deployment.graph_module)["features.0.0"]
    assert stored.dtype == torch.int8 and stored.shape == (48, 2, 3, 3)
    codes, padding = split_padding(stored, 1)
    simulated = wrapper.param_quantizers["weight"](weight).detach()
    assert torch.equal(codes.float() * torch.as_tensor(scale).view(-1, 1, 1, 1), simulated)
    assert padding.shape == (48, 1, 3, 3) and not padding.any()


def test_channel_pad_changes_no_output_of_the_reference_graph(compact, monkeypatch):
    qmodel, runner, _, _ = compact
    monkeypatch.setattr(pt2e_flow, "pad_single_channel_convs", lambda gm, wrappers: [])
    unpadded = pt2e_model(qmodel, torch.randn(4, 1, 28, 28), compile=False)
    assert unpadded.padded_inputs == []
    x = torch.randn(32, 1, 28, 28)
    with torch.no_grad():  # both graphs uncompiled: float quantize/dequantize, so the zero channel adds exactly 0
        assert torch.equal(runner.deployment.graph_module(x), unpadded.graph_module(x))


def test_pt2e_file_holds_the_int8_graph_and_runs_again(compact, tmp_path):
    qmodel, runner, path, _ = compact
    data = path.read_bytes()
    assert runner.size_bytes == len(data) and runner.sha256 == hashlib.sha256(data).hexdigest()
    fp32_bytes = sum(p.numel() * 4 for p in qmodel.parameters())
    assert runner.size_bytes < 0.4 * fp32_bytes  # int8 weights, the folded float weights pruned
    # the bytes depend on the graph only: saved again, from another example batch, the file is the same
    assert save_pt2e(runner.deployment.graph_module, torch.randn(8, 1, 28, 28), tmp_path / "again.pt2").sha256 \
        == runner.sha256
    module, shape, file = load_pt2e(path, runner.sha256)
    assert shape == (1, 28, 28) and file.sha256 == runner.sha256
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(module(x), runner.deployment.graph_module(x))


def test_a_pt2e_file_is_loaded_only_with_the_bytes_quantlens_wrote(compact, tmp_path):
    _, runner, path, _ = compact
    changed = tmp_path / "changed.pt2"
    changed.write_bytes(path.read_bytes() + b"\0")  # loading unpickles: any other bytes are refused
    with pytest.raises(BackendError, match=r"changed.pt2: its sha256 is not that of the file quantlens wrote"):
        load_pt2e(changed, runner.sha256)


def test_a_pt2e_file_name_without_the_pt2_suffix_is_refused(compact, tmp_path):
    _, runner, _, _ = compact
    with pytest.raises(BackendError, match=r"model.onnx: the name must end in \.pt2 "):
        save_pt2e(runner.deployment.graph_module, torch.randn(2, 1, 28, 28), tmp_path / "model.onnx")
