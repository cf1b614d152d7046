"""`--check`: everything that can be validated without running is validated; nothing is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quantlens.models.build import build_model


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def folder(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    return tmp_path / "imgs"


@pytest.mark.parametrize("command", [
    ["run"],
    ["eval", "--model", "compact_cnn", "--data", "digits"],
    ["train", "--model", "compact_cnn", "--data", "digits", "--epochs", "1"],
    ["simulate", "--model", "compact_cnn", "--data", "digits", "--format", "int8,fp8_e4m3"],
    ["bench", "--model", "compact_cnn", "--backends", "torch-fp32", "--batch-sizes", "1"],
])
def test_every_command_checks_and_writes_nothing(cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = cli(*command, "--check", "--out", tmp_path / "runs")
    assert result.code == 0, result.err
    assert "check passed" in result.out and "data:" in result.out and "model:" in result.out
    assert _files(tmp_path) == []


def test_check_of_a_yaml_file_and_an_image_folder(cli, tmp_path, folder):
    config = tmp_path / "e.yaml"
    config.write_text(f"data: {{source: 'imagefolder:{folder}'}}\noutput: {{root: '{tmp_path / 'runs'}'}}\n")
    result = cli("run", "--check", config)
    assert result.code == 0, result.err
    assert "2 classes" in result.out
    assert not (tmp_path / "runs").exists()


def test_check_reads_the_weights_header_and_sidecar(cli, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save(build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8).state_dict(), weights)
    ok = cli("eval", "--check", "--model", "compact_cnn", "--data", "digits", "--weights", weights,
             "--out", tmp_path / "runs")
    assert ok.code == 0, ok.err and "w.pt" in ok.out
    weights.with_suffix(".json").write_bytes(b"\xff\xfe not json")
    bad = cli("eval", "--check", "--model", "compact_cnn", "--data", "digits", "--weights", weights,
              "--out", tmp_path / "runs")
    assert bad.code == 2 and bad.error_lines[0].startswith("error: model.weights: "), bad.err
    assert "w.json" in bad.error_lines[0]
    assert _files(tmp_path / "runs") == []


@pytest.mark.parametrize(("args", "field"), [
    (["eval", "--model", "compact_cnn", "--data", "imagefolder:/nowhere/at/all"], "data.source"),
    (["eval", "--model", "compact_cnn", "--data", "medmnist:/nowhere.npz"], "data.source"),
    (["eval", "--model", "resnet21_cifar", "--data", "digits"], "model.name"),
    (["eval", "--model", "python:/nowhere/net.py:Net", "--data", "digits"], "model.name"),
    (["eval", "--model", "python:no_such_module_xyz:make", "--data", "digits"], "model.name"),
    (["eval", "--model", "compact_cnn", "--data", "digits", "--weights", "/nowhere/w.pt"], "model.weights"),
    (["eval", "--model", "compact_cnn", "--data", "digits", "--weights", ""], "model.weights"),
    (["bench", "--model", "compact_cnn", "--backends", "tensorrt-int8", "--batch-sizes", "1"], "benchmark.backends"),
    (["simulate", "--model", "compact_cnn", "--data", "digits", "--format", "fp9"], "quantization.0.format"),
])
def test_check_refuses_with_the_field_named(cli, tmp_path, args, field):
    result = cli(*args, "--check", "--out", tmp_path / "runs")
    assert result.code == 2, result.out
    assert len(result.error_lines) == 1 and field in result.error_lines[0], result.err
    assert not (tmp_path / "runs").exists()


def test_check_refuses_an_unwritable_root(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("eval", "--check", "--model", "compact_cnn", "--data", "digits", "--out", tmp_path / "file" / "r")
    assert result.code == 2 and "output.root" in result.error_lines[0]
