"""The command line: real subprocesses, checking exit codes and that user mistakes are one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image


def quantlens(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantlens", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    # Progress lines may come first; the error is one line, and the last one.
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_data_path(tmp_path):
    assert_user_error(quantlens("eval", "--model", "compact_cnn", "--data", f"imagefolder:{tmp_path}/nope",
                                "--out", str(tmp_path)), "does not exist", "nope")


def test_empty_class_folder(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "data" / "a" / "x.png")
    assert_user_error(quantlens("eval", "--model", "compact_cnn", "--data", f"imagefolder:{tmp_path / 'data'}",
                                "--out", str(tmp_path)), "holds no images", "/b")


def test_unknown_model_lists_close_matches(tmp_path):
    assert_user_error(quantlens("eval", "--model", "resnet21_cifar", "--data", "digits", "--out", str(tmp_path)),
                      "unknown model 'resnet21_cifar'", "resnet20_cifar")


def test_unknown_config_key(tmp_path):
    config = tmp_path / "e.yaml"
    config.write_text("data:\n  source: digits\ntrian:\n  epochs: 3\n")
    assert_user_error(quantlens("run", str(config)), "unknown key 'trian'")


def test_checkpoint_shape_mismatch(tmp_path):
    from quantlens.models.build import build_model

    path = tmp_path / "w.pt"
    torch.save(build_model("compact_cnn", num_classes=3, in_channels=1, image_size=8).state_dict(), path)
    assert_user_error(quantlens("eval", "--model", "compact_cnn", "--data", "digits", "--weights", str(path),
                                "--out", str(tmp_path)), "does not fit the model", "shape mismatch", "classifier")


class Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_checkpoint_with_pickled_objects(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {}, "hook": Payload()}, path)
    result = quantlens("eval", "--model", "compact_cnn", "--data", "digits", "--weights", str(path),
                       "--out", str(tmp_path))
    assert_user_error(result, "pickled Python objects", "refused")
    assert "executed" not in result.stdout


def test_corrupt_image_is_skipped_and_recorded(tmp_path):
    import json

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = quantlens("eval", "--model", "compact_cnn", "--data", f"imagefolder:{tmp_path / 'data'}",
                       "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    assert "1 file(s)" in result.stderr and "skipped" in result.stderr
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p.name != "cv_splits"]
    skipped = json.loads((run / "data.json").read_text())["skipped_files"]
    assert [s["file"] for s in skipped] == ["b/bad.png"]


def test_schema_prints_json():
    import json

    result = quantlens("schema")
    assert result.returncode == 0
    assert "train" in json.loads(result.stdout)["properties"]


def test_simulate_unknown_format_lists_known_ones(tmp_path):
    assert_user_error(quantlens("simulate", "--model", "compact_cnn", "--data", "digits", "--format", "fp9",
                                "--out", str(tmp_path)), "unknown number format 'fp9'", "fp8_e4m3")


def test_simulate_block_format_with_tensor_mode_refused(tmp_path):
    assert_user_error(quantlens("simulate", "--model", "compact_cnn", "--data", "digits", "--format", "mxfp4",
                                "--weight-mode", "tensor", "--out", str(tmp_path)),
                      "mxfp4 is a block format", "quantization.0.weights")


@pytest.mark.parametrize(("option", "value"), [("--input-mode", "rows"), ("--input-ops", "gemm")])
def test_simulate_choices_refuse_other_values_naming_the_option(tmp_path, option, value):
    result = quantlens("simulate", "--model", "compact_cnn", "--data", "digits", option, value, "--out", str(tmp_path))
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_bench_unknown_backend_lists_known_ones(tmp_path):
    assert_user_error(quantlens("bench", "--model", "resnet20_cifar", "--backends", "torch-fp32,ort-int9",
                                "--out", str(tmp_path)), "unknown backend 'ort-int9'", "ort-int8")


def test_bench_batch_size_zero(tmp_path):
    assert_user_error(quantlens("bench", "--model", "resnet20_cifar", "--batch-sizes", "1,0",
                                "--out", str(tmp_path)), "--batch-sizes: batch size 0 is not allowed")


def test_bench_missing_package_names_the_extra(tmp_path):
    # A sitecustomize that blocks the import of openvino, as on a machine without the extra.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(blocker)}
    result = subprocess.run([sys.executable, "-m", "quantlens", "bench", "--model", "resnet20_cifar",
                             "--backends", "openvino-fp32", "--batch-sizes", "1", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert_user_error(result, "openvino", "pip install 'quantlens[openvino]'")


def test_bench_tensorrt_without_gpu_is_refused_with_the_reason(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: tensorrt may run here")
    result = quantlens("bench", "--model", "resnet20_cifar", "--backends", "tensorrt-fp16", "--batch-sizes", "1",
                       "--out", str(tmp_path))
    assert_user_error(result, "tensorrt-fp16")


def test_positive_class_out_of_range_for_a_binary_task(tmp_path, shared_path):
    config = tmp_path / "e.yaml"
    config.write_text(f"data: {{source: 'medmnist:{shared_path('data/pneumoniamnist/pneumoniamnist.npz')}'}}\n"
                      f"eval: {{positive_class: 2}}\noutput: {{root: '{tmp_path}'}}\n")
    assert_user_error(quantlens("run", str(config)), "eval.positive_class is 2", "1: pneumonia")
