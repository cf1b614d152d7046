"""Models from outside the zoo: a user's python callable; timm/torchvision only when they import."""

from __future__ import annotations

import importlib

import pytest
import torch

from quantlens.errors import ModelError, UnknownNameError
from quantlens.models.build import build_model, input_channels

USER_MODEL = '''
import torch
from torch import nn

def make(num_classes, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

NOT_A_MODEL = 3
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_net.py"
    path.write_text(USER_MODEL)
    return path


def test_python_file_callable_gets_the_arguments_it_accepts(user_file):
    model = build_model(f"python:{user_file}:make", num_classes=5, in_channels=1, image_size=16)
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 5) and input_channels(model) == 1


def test_python_module_callable():
    model = build_model("python:quantlens.models.zoo.compact_cnn:compact_cnn", num_classes=3, in_channels=1,
                        image_size=8)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 3)


@pytest.mark.parametrize("ref, message", [
    ("python:nowhere_module_x:make", "cannot import module"),
    ("python:quantlens:missing_attr", "has no attribute"),
    ("python:justmodule", "must look like"),
])
def test_python_reference_errors(ref, message):
    with pytest.raises(ModelError, match=message):
        build_model(ref, num_classes=2, in_channels=1, image_size=8)


def test_python_callable_must_return_a_module(user_file):
    with pytest.raises(ModelError, match="not callable|failed to build|not an nn.Module"):
        build_model(f"python:{user_file}:NOT_A_MODEL", num_classes=2, in_channels=1, image_size=8)


def test_unknown_zoo_option_is_a_model_error():
    with pytest.raises(ModelError, match="cannot build 'compact_cnn'"):
        build_model("compact_cnn", num_classes=2, in_channels=1, image_size=8, options={"depth": 3})


def test_unknown_zoo_name():
    with pytest.raises(UnknownNameError, match="did you mean resnet18"):
        build_model("resnet19", num_classes=2, in_channels=1, image_size=8)


@pytest.mark.parametrize("package", ["timm", "torchvision"])
def test_optional_packages(package):
    try:
        importlib.import_module(package)
    except Exception:  # noqa: BLE001  (torchvision fails with RuntimeError on a mismatched torch build)
        with pytest.raises(ModelError, match=f"need the {package} package"):
            build_model(f"{package}:resnet18", num_classes=2, in_channels=3, image_size=32)
        return
    model = build_model(f"{package}:resnet18", num_classes=2, in_channels=3, image_size=32)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
