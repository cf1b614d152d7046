"""Every CPU backend runs and agrees with eager FP32, and says honestly what it ran.

Tolerances (logits compared with eager FP32 on the same inputs):
  * FP32 backends (channels-last, torch.compile, ONNX Runtime, OpenVINO): max |difference| <=
    1e-4 x max |FP32 logit| + 1e-5 (different kernels sum in different orders);
  * FP16 (autocast, or an FP16 ONNX graph): <= 1e-2 x max |logit|; BF16 autocast: <= 5e-2 x max |logit|
    (8 mantissa bits);
  * INT8: top-1 agreement >= 90 % with FP32 on 64 real CIFAR-10 images with the pretrained
    ResNet-20 (published INT8 models disagree on 2-3 %); logits on random inputs mean nothing.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tests_backends_data import cifar_images, pretrained_resnet20

from quantlens.backends import BackendError, Target, compute_precision, export_onnx, get_backend
from quantlens.backends.onnx_export import verify_against_torch
from quantlens.backends.torch_eager import cpu_native
from quantlens.models.build import build_model

FP32_LIKE = ("torch-fp32", "torch-fp32-cl", "torch-compile", "ort-fp32", "openvino-fp32")
LOW_PRECISION = {"torch-fp16": 1e-2, "ort-fp16": 1e-2, "torch-bf16": 5e-2}
INT8 = ("torch-int8", "ort-int8", "ort-int8-dynamic", "openvino-int8")


def _skip_unavailable(name: str) -> None:
    ok, reason = get_backend(name).available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tiny():
    """A seeded ResNet-20 at 16x16 (fully convolutional, so any side >= 8 works) and 16 inputs."""
    torch.manual_seed(0)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16).eval()
    images = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(images)
    return model, images, reference


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    """One work directory per module (and xdist worker): the ONNX export is made once and reused."""
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="module")
def runners(tiny, work_dir):
    """Prepared runners, built on first use and shared by the tests of this module."""
    model, images, _ = tiny
    cache = {}

    def get(name: str):
        _skip_unavailable(name)
        if name not in cache:
            cache[name] = get_backend(name).prepare(model, images[:2], [images[:8], images[8:]], work_dir,
                                                    Target("cpu", threads=1))
        return cache[name]

    return get


@pytest.mark.parametrize("name", FP32_LIKE)
def test_fp32_backends_match_eager_fp32(runners, tiny, name):
    _, images, reference = tiny
    runner = runners(name)
    output = runner.run(images[:2])  # the size prepare used: torch.compile would recompile for another
    assert output.dtype == torch.float32 and output.shape == (2, 10)
    assert float((output - reference[:2]).abs().max()) <= 1e-4 * float(reference.abs().max()) + 1e-5
    assert runner.info.actual_precision == runner.info.requested_precision == "fp32"
    assert runner.info.threads == 1


@pytest.mark.parametrize("name", sorted(LOW_PRECISION))
def test_low_precision_backends_stay_within_their_tolerance(runners, tiny, name):
    _, images, reference = tiny
    output = runners(name).run(images)
    assert output.dtype == torch.float32
    assert float((output - reference).abs().max()) <= LOW_PRECISION[name] * float(reference.abs().max())


@pytest.mark.parametrize("name", INT8)
def test_int8_backends_run_any_batch_size_and_shrink_the_weights(runners, tiny, name):
    _, images, reference = tiny
    runner = runners(name)
    for size in (1, 5):
        assert runner.run(images[:size]).shape == (size, 10)
    fp32_bytes = runners("torch-fp32").info.parameter_bytes
    assert 0 < runner.info.parameter_bytes < fp32_bytes / 2
    assert all(np.isfinite(runner.run(images).numpy()).ravel())


def test_ort_fp16_reports_what_the_provider_really_computed(runners, tiny):
    _, images, _ = tiny
    runner = runners("ort-fp16")
    measured = compute_precision(runner.profile_operators(images[:2], runs=1).ops)
    assert runner.info.actual_precision == measured
    assert runner.info.requested_precision == "fp16"
    if measured == "fp32":  # the x86 CPU provider: casts inserted around FP32 kernels
        assert runner.info.fell_back and runner.info.precision_label == "fp16->fp32"
        assert "FP16 requested" in runner.info.notes[0] and "FP32" in runner.info.notes[0]


@pytest.mark.parametrize("name", ["torch-bf16", "torch-fp16"])
def test_autocast_reports_emulation_on_cpus_without_native_support(runners, name):
    info = runners(name).info
    precision = name.split("-")[1]
    assert info.actual_precision == precision and not info.fell_back
    emulated = any("emulated" in note for note in info.notes)
    assert emulated == (not cpu_native(precision))


def test_int8_backends_list_the_ops_left_in_float(runners):
    ort_info = runners("ort-int8").info
    assert ort_info.actual_precision == "int8"
    assert {"ReduceMean", "Pad"} <= set(ort_info.float_ops)  # global pooling; option-A shortcut padding
    torch_info = runners("torch-int8").info
    assert torch_info.actual_precision == "int8"
    assert "pad" in torch_info.float_ops
    dynamic = runners("ort-int8-dynamic").info
    assert dynamic.actual_precision == "int8-dynamic"
    assert any("not a static INT8 model" in note for note in dynamic.notes)


def test_openvino_fp32_sets_and_reports_the_precision_hint(runners):
    info = runners("openvino-fp32").info
    assert any("INFERENCE_PRECISION_HINT f32" in note for note in info.notes)
    assert info.actual_precision == "fp32"


def test_onnx_export_is_one_file_with_a_dynamic_batch_and_is_reused(tiny, work_dir):
    model, images, reference = tiny
    export = export_onnx(model, images[:4], work_dir)
    assert not export.path.with_name(export.path.name + ".data").exists()
    session = ort.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    for size in (1, 7):
        (output,) = session.run(None, {"input": images[:size].numpy()})
        np.testing.assert_allclose(output, reference[:size].numpy(), rtol=1e-4, atol=1e-5)
    stamp = export.path.stat().st_mtime_ns
    assert export_onnx(model, images[:4], work_dir).path == export.path
    assert export.path.stat().st_mtime_ns == stamp


def test_a_reused_export_is_verified_again_for_a_stricter_tolerance(tiny, tmp_path):
    model, images, _ = tiny
    export = export_onnx(model, images[:4], tmp_path)
    sidecar = export.path.with_suffix(".verified.json")
    assert json.loads(sidecar.read_text())["atol"] == 1e-4
    if export.max_abs_diff > 0:  # the cached verification does not stand for a tolerance it never met
        with pytest.raises(BackendError, match="disagrees with torch"):
            export_onnx(model, images[:4], tmp_path, rtol=0.0, atol=export.max_abs_diff / 2)
    again = export_onnx(model, images[:4], tmp_path, rtol=1e-2, atol=1e-3)
    assert again.path == export.path and json.loads(sidecar.read_text())["rtol"] == 1e-2


def test_an_export_that_disagrees_with_torch_is_refused(tiny, work_dir):
    model, images, _ = tiny
    export = export_onnx(model, images[:4], work_dir)
    other = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.linear.bias += 0.5  # the file no longer matches this module
    with pytest.raises(BackendError, match="disagrees with torch.*refused"):
        verify_against_torch(export.path, other, images[:4], rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def real_work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("real")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", INT8)
def test_int8_agrees_with_fp32_on_real_images(name, real_work_dir):
    _skip_unavailable(name)
    model = pretrained_resnet20()
    images = cifar_images(per_class=13)
    calibration, evaluation = images[:64], images[64:128]
    runner = get_backend(name).prepare(model, calibration[:8], [calibration[:32], calibration[32:]],
                                       real_work_dir, Target("cpu", threads=1))
    with torch.no_grad():
        expected = model(evaluation).argmax(1)
    agreement = float((runner.run(evaluation).argmax(1) == expected).float().mean())
    assert agreement >= 0.9, f"{name}: top-1 agreement with FP32 {agreement:.1%}"
