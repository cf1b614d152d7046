"""Simulated vs deployed: top-1 agreement, logit differences in accumulator LSB and per-layer integer
codes of the fake-quant and deployment-faithful simulations against ONNX Runtime (and OpenVINO), as
a JSON-ready report; on the pretrained ResNet-20 with real CIFAR-10 images when ../shared is there."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from test_qdq_export import fold_batchnorm, int8_plans, small_qmodel  # noqa: E402
from tests_backends_data import cifar_images, pretrained_resnet20  # noqa: E402

from quantlens.backends.qdq import check_agreement, export_qdq  # noqa: E402
from quantlens.nn.convert import calibrate, quantize_model  # noqa: E402


def test_small_cnn_agreement_report(tmp_path):
    openvino = pytest.importorskip("openvino") is not None
    qmodel, x = small_qmodel(seed=5)
    result = export_qdq(qmodel, x, tmp_path / "small.onnx")
    torch.manual_seed(6)
    batches = list(torch.randn(48, 3, 16, 16).split(16))
    report = check_agreement(qmodel, result.path, batches, openvino=openvino, precise=True)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # JSON-serialisable
    assert data["samples"] == 48 and data["ort_precise"] is True
    assert "LSB of fc's int32 accumulator" in data["logit_unit"]
    ort = report.runtime("onnxruntime")
    assert ort.top1_agree_faithful == 48 and ort.top1_agree_simulated >= 46
    assert report.fusion_unchanged_by_probes is True
    by_quantizer = {lc.quantizers[0]: lc for lc in report.layers}
    # upstream of the float conv c2 the faithful codes are exact; the ordinary simulation's are not always
    assert by_quantizer["c1 input 0"].faithful_differ == 0 and by_quantizer["c2 input 0"].faithful_differ == 0
    assert by_quantizer["fc input 0"].faithful_max_lsb <= 1
    assert sum(lc.simulated_differ for lc in report.layers) >= sum(lc.faithful_differ for lc in report.layers)
    if openvino:
        assert report.runtime("openvino").top1_agree_simulated >= 46
        assert data["openvino_fusion"]["runtime"] == "openvino"
        assert "c1" in data["openvino_fusion"]["integer_layers"]


@pytest.mark.shared_data
def test_pretrained_resnet20_on_cifar10_agrees_with_onnx_runtime(tmp_path):
    images = cifar_images(6)  # (60, 3, 32, 32), class i % 10
    labels = torch.arange(60) % 10
    model = fold_batchnorm(pretrained_resnet20())
    qmodel = quantize_model(model, int8_plans(model))
    calibrate(qmodel, images[:30].split(3))  # batches of 3: quantlens's kernels stay eager (fast)
    result = export_qdq(qmodel, images[:2], tmp_path / "resnet20.onnx")
    batches, label_batches = images[30:].split(3), labels[30:].split(3)
    report = check_agreement(qmodel, result.path, batches, labels=label_batches, openvino=False, precise=True)
    ort = report.runtime("onnxruntime")
    assert ort.samples == 30
    assert ort.top1_agree_faithful == 30 and ort.logits_exact_faithful == ort.logits
    assert ort.top1_agree_simulated >= 29
    assert all(lc.faithful_differ == 0 for lc in report.layers)
    assert report.to_dict()["runtimes"][0]["top1_accuracy"] >= 0.5
