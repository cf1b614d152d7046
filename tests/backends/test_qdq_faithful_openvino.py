"""OpenVINO-faithful simulation: on seeded synthetic models it reproduces OpenVINO's CPU execution of
the QDQ file bit for bit (fused conv requantization, residual Adds fused with their unrounded first
quantizer, float Slice/Pad/ReduceMean between quantizers, FC), including 8-bit weights whose products
saturate oneDNN's int16 pairs on CPUs without VNNI; the accumulators follow the pair rule exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")

from test_qdq_export import fold_batchnorm, int8_plans, randomize_batchnorm, small_qmodel  # noqa: E402

from quantlens.backends.base import BackendError, cpu_has_int8_dot_product  # noqa: E402
from quantlens.backends.qdq import (  # noqa: E402
    OpenVinoQdqRunner,
    check_agreement,
    export_qdq,
    openvino_faithful_model,
    openvino_runtime,
)
from quantlens.backends.qdq.openvino_faithful import conv_accumulator, linear_accumulator  # noqa: E402
from quantlens.models.zoo.resnet_cifar import CifarResNet  # noqa: E402
from quantlens.nn.convert import calibrate, quantize_model  # noqa: E402
from quantlens.nn.spec import LayerPlan, TensorSpec  # noqa: E402


def pair_reference(x: np.ndarray, zp: int, w: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """Direct loops: products of input channels (2i, 2i+1) at one tap summed and clamped to int16."""
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.full((b, c + c % 2, h + 2 * pad, wd + 2 * pad), 0, np.int64)
    xp[:, :c] = zp
    xp[:, :c, pad:pad + h, pad:pad + wd] = x
    wp = np.zeros((o, c + c % 2, k, k), np.int64)
    wp[:, :c] = w
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    acc = np.zeros((b, o, ho, wo), np.int64)
    for i in range(k):
        for j in range(k):
            tap = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]  # (B, C, Ho, Wo)
            prod = tap[:, None] * wp[None, :, :, i, j, None, None]  # (B, O, C, Ho, Wo)
            acc += np.clip(prod[:, :, 0::2] + prod[:, :, 1::2], -32768, 32767).sum(2)
    return acc - zp * w.sum((1, 2, 3))[None, :, None, None]


@pytest.mark.parametrize("channels,zp,stride", [(5, 114, 1), (16, 0, 2)])
def test_conv_accumulator_sums_input_channel_pairs_in_saturating_int16(channels, zp, stride):
    g = np.random.default_rng(channels)
    x = g.integers(120, 256, (2, channels, 6, 6))
    w = g.integers(-127, 128, (4, channels, 3, 3))
    expected = pair_reference(x, zp, w, 1, stride)
    got = conv_accumulator(torch.from_numpy(x).float(), zp, torch.from_numpy(w).float(), (stride, stride),
                           (1, 1, 1, 1), (1, 1), saturate=True)
    np.testing.assert_array_equal(got.numpy().astype(np.int64), expected)
    exact = conv_accumulator(torch.from_numpy(x).float(), zp, torch.from_numpy(w).float(), (stride, stride),
                             (1, 1, 1, 1), (1, 1), saturate=False)
    assert (exact.numpy() != expected).any()  # these codes do saturate


def test_linear_accumulator_pairs_neighbouring_inputs():
    g = np.random.default_rng(3)
    x, w = g.integers(200, 256, (3, 9)), g.integers(-127, 128, (5, 9))  # odd K: the last input has no partner
    prod = np.concatenate([x[:, None] * w[None], np.zeros((3, 5, 1), np.int64)], 2)
    expected = np.clip(prod[:, :, 0::2] + prod[:, :, 1::2], -32768, 32767).sum(2)
    got = linear_accumulator(torch.from_numpy(x).float(), 0, torch.from_numpy(w).float(), saturate=True)
    np.testing.assert_array_equal(got.numpy().astype(np.int64), expected)


def _deployed_and_simulated(qmodel, path, batches, **options):
    runner = OpenVinoQdqRunner(path)
    simulation = openvino_faithful_model(qmodel, path, **options)
    with torch.no_grad():
        simulated = np.concatenate([simulation(b).numpy() for b in batches])
    return np.concatenate([runner.run(b) for b in batches]), simulated, simulation


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    qmodel, x = small_qmodel(seed=5)
    return qmodel, export_qdq(qmodel, x, tmp_path_factory.mktemp("qdq") / "small.onnx")


def test_small_cnn_logits_and_codes_equal_openvino(small):
    qmodel, result = small
    torch.manual_seed(6)
    batches = list(torch.randn(32, 3, 16, 16).split(16))
    report = check_agreement(qmodel, result.path, batches, openvino=True, precise=True)
    ov = report.runtime("openvino")
    assert ov.faithful_model == "openvino" and ov.top1_agree_faithful == 32
    assert ov.logits_exact_faithful == ov.logits and ov.lsb_max_faithful == 0
    assert report.openvino_fusion_unchanged_by_probes is True
    probed = [lc for lc in report.layers if lc.openvino is not None]
    assert {lc.quantizers[0] for lc in probed} == {"c1 input 0", "c2 input 0", "fc input 0"}
    assert all(lc.openvino.count > 0 and lc.openvino.faithful_differ == 0 for lc in probed)
    assert report.runtime("onnxruntime").top1_agree_faithful == 32  # ONNX Runtime's side is unchanged


def tiny_resnet_qmodel() -> tuple[nn.Module, torch.Tensor]:
    """A CIFAR ResNet-14 of widths 8/16/16 (random weights, randomised BatchNorms folded), int8 with the
    pooling input quantized too (as the PTQ recipes do), calibrated on 12 random 16 x 16 images: every
    residual pattern of ResNet-20 (identity and option-A shortcuts, Add -> ReLU -> Q fused or left in
    float before Slice/Pad, ReduceMean over codes) at a fraction of the export time."""
    torch.manual_seed(3)
    model = fold_batchnorm(randomize_batchnorm(CifarResNet(2, 10, 3, widths=(8, 16, 16)), seed=3).eval())
    plans = int8_plans(model)
    plans["avgpool"] = LayerPlan(inputs=TensorSpec("int8_asym", mode="tensor"))
    x = torch.randn(12, 3, 16, 16)
    qmodel = quantize_model(model, plans)
    calibrate(qmodel, x.split(3))
    return qmodel, x


def test_residual_network_equals_openvino_bit_for_bit(tmp_path):
    qmodel, x = tiny_resnet_qmodel()
    result = export_qdq(qmodel, x, tmp_path / "resnet14.onnx")
    runtime = openvino_runtime(result.path)
    fused_adds = [n for n in runtime.nodes if n.layer_type == "Convolution" and any("add" in o for o in n.originals)]
    assert len(fused_adds) == 6  # every residual Add runs inside its convolution
    torch.manual_seed(2)
    deployed, simulated, simulation = _deployed_and_simulated(qmodel, result.path,
                                                             list(torch.randn(16, 3, 16, 16).split(8)),
                                                             runtime=runtime)
    np.testing.assert_array_equal(simulated, deployed)
    assert simulation.notes == []
    assert "avgpool input 0" in simulation.codes and "layer1.0.add input 0" not in simulation.codes  # unrounded


class PairNet(nn.Module):
    """(B, 3, 8, 8) -> (B, 10): conv-relu with a large positive bias (codes near 255), then a conv whose
    positive weights make neighbouring input channels' products overflow int16, pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.c1.weight.normal_(0.0, 0.05)
            self.c1.bias.fill_(2.0)
            self.c2.weight.uniform_(0.5, 1.0)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.c2(self.r1(self.c1(x))))))


@pytest.mark.skipif(cpu_has_int8_dot_product(), reason="this CPU has VNNI/AMX-INT8: OpenVINO's int8 dot products "
                                                        "do not saturate in int16 pairs here")
def test_saturating_int16_pairs_are_what_openvino_computes(tmp_path):
    torch.manual_seed(0)
    model = PairNet().eval()
    x = torch.randn(16, 3, 8, 8)
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, x.split(8))
    result = export_qdq(qmodel, x, tmp_path / "pairs.onnx")
    batches = list(x.split(8))
    deployed, simulated, _ = _deployed_and_simulated(qmodel, result.path, batches)
    np.testing.assert_array_equal(simulated, deployed)
    _, exact, _ = _deployed_and_simulated(qmodel, result.path, batches, saturate=False)
    assert (exact != deployed).mean() > 0.5  # exact int32 accumulation is another model here


def test_a_file_from_another_calibration_is_refused_in_one_line(small):
    _, result = small
    other, _ = small_qmodel(seed=7)
    with pytest.raises(BackendError, match="other scales than the model's") as info:
        openvino_faithful_model(other, result.path)
    assert "\n" not in str(info.value)


def test_a_final_softmax_and_its_log_run_in_float_after_the_last_quantizer(tmp_path):
    """A classifier ending in a Softmax (an ONNX file from elsewhere), made by quantlens to return its log:
    the tail after the last quantizer is float, and the simulation still predicts OpenVINO's classes."""
    from test_qdq_export import SmallCNN

    from quantlens.train.outputs import adapt_outputs

    torch.manual_seed(4)
    model, _ = adapt_outputs(nn.Sequential(SmallCNN(), nn.Softmax(dim=1)).eval(), "probabilities")
    x = torch.randn(16, 3, 16, 16)
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, x.split(8))
    result = export_qdq(qmodel, x, tmp_path / "softmax.onnx")
    deployed, simulated, simulation = _deployed_and_simulated(qmodel, result.path, list(x.split(8)))
    assert (deployed.argmax(1) == simulated.argmax(1)).all()
    np.testing.assert_allclose(simulated, deployed, rtol=0, atol=1e-4)  # log-probabilities, float tail
    assert any("Softmax runs in float" in note for note in simulation.notes)


class _Normalise(nn.Module):
    """(x - mean) / std on 0..255 pixels: an ONNX file's own input normalisation, before any quantizer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([60.0, 55.0, 50.0]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def test_an_input_normalisation_before_the_first_quantizer_runs_in_float(tmp_path):
    from test_qdq_export import SmallCNN

    torch.manual_seed(5)
    model = nn.Sequential(_Normalise(), SmallCNN()).eval()
    x = torch.rand(16, 3, 16, 16) * 255
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, x.split(8))
    result = export_qdq(qmodel, x, tmp_path / "normalised.onnx")
    deployed, simulated, simulation = _deployed_and_simulated(qmodel, result.path, list(x.split(8)))
    assert (deployed.argmax(1) == simulated.argmax(1)).all()
    np.testing.assert_array_equal(simulated, deployed)
    assert any("before its first quantizer runs in float" in note for note in simulation.notes)
