"""The backend registry, availability reasons, missing-package messages, thread and engine restoring."""

from __future__ import annotations

import sys

import pytest
import torch

from quantlens.backends import BACKENDS, MissingPackageError, Target, get_backend, torch_threads
from quantlens.backends.base import BackendUnavailableError
from quantlens.backends.torch_int8 import quantized_engine
from quantlens.errors import QuantlensError, UnknownNameError

CPU_BACKENDS = ("torch-fp32", "torch-fp32-cl", "torch-bf16", "torch-fp16", "torch-compile", "torch-int8",
                "ort-fp32", "ort-fp16", "ort-int8", "ort-int8-dynamic", "openvino-fp32", "openvino-int8")


def test_every_backend_of_the_issue_is_registered():
    assert set(CPU_BACKENDS) | {"tensorrt-fp16", "tensorrt-int8"} <= set(BACKENDS.names())


def test_unknown_backend_is_one_line_listing_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        get_backend("ort-int4")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown backend 'ort-int4'" in message
    assert "did you mean" in message
    for name in ("torch-fp32", "ort-int8", "openvino-int8"):
        assert name in message


@pytest.mark.parametrize(("blocked", "backend", "extra"), [
    ("openvino", "openvino-fp32", "openvino"),
    ("nncf", "openvino-int8", "openvino"),
    ("onnxruntime", "ort-int8", "onnx"),
    ("onnxscript", "ort-fp32", "onnx"),
])
def test_missing_package_names_the_package_and_the_extra(monkeypatch, blocked, backend, extra):
    from quantlens.backends.base import package_installed

    # A backend names the first of its packages that is missing, in its own order: `blocked` is
    # the one named only when those listed before it are installed (openvino-int8 checks openvino
    # and the ONNX export packages before nncf), so without them this case cannot be checked here.
    packages = get_backend(backend).packages
    before = [package for package in packages[:packages.index(blocked)] if not package_installed(package)]
    if before:
        pytest.skip(f"{backend} checks {', '.join(map(repr, before))} before {blocked!r}, and "
                    f"{'it is' if len(before) == 1 else 'they are'} not installed")
    monkeypatch.setitem(sys.modules, blocked, None)  # the standard way to make an import fail
    ok, reason = get_backend(backend).available()
    assert not ok
    assert repr(blocked) in reason
    assert f"pip install 'quantlens[{extra}]'" in reason
    with pytest.raises(MissingPackageError) as info:
        get_backend(backend).prepare(torch.nn.Linear(2, 2), torch.zeros(1, 3, 8, 8), [], "unused")
    assert str(info.value) == reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("backend", ["tensorrt-fp16", "tensorrt-int8"])
def test_tensorrt_is_skipped_with_a_reason_without_a_gpu(backend):
    ok, reason = get_backend(backend).available(Target("cpu"))
    assert not ok
    assert "no CUDA GPU" in reason
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        get_backend(backend).require_available()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_target_is_refused_on_a_cpu_machine():
    ok, reason = get_backend("torch-fp32").available(Target("cuda"))
    assert not ok and "CUDA" in reason
    assert get_backend("torch-int8").available(Target("cuda"))[0] is False


def test_target_validates_device_and_threads():
    with pytest.raises(QuantlensError, match="device"):
        Target("tpu", 1)
    with pytest.raises(QuantlensError, match="threads"):
        Target("cpu", 0)


def test_torch_threads_and_quantized_engine_are_restored():
    threads = torch.get_num_threads()
    with torch_threads(1 if threads != 1 else 2):
        assert torch.get_num_threads() != threads
    assert torch.get_num_threads() == threads
    engine = torch.backends.quantized.engine
    other = next(e for e in torch.backends.quantized.supported_engines if e not in (engine, "none"))
    with pytest.raises(RuntimeError, match="inside"):
        with quantized_engine(other):
            assert torch.backends.quantized.engine == other
            raise RuntimeError("inside")
    assert torch.backends.quantized.engine == engine
