"""`quantlens bench --weights`: the synthetic data takes its classes, channels and size from the checkpoint."""

from __future__ import annotations

import pytest
import torch

from quantlens.errors import ConfigError
from quantlens.experiments.bench_input import bench_input, infer_num_classes
from quantlens.models.build import build_model
from quantlens.models.sidecar import CheckpointSidecar


@pytest.mark.parametrize(("model", "classes", "channels", "size"), [
    ("resnet20_cifar", 10, 3, 32), ("compact_cnn", 7, 1, 16), ("mobilenet_v2", 5, 3, 32), ("vit_tiny", 3, 3, 32)])
def test_class_count_read_from_the_classifier(tmp_path, model, classes, channels, size):
    path = tmp_path / "w.pt"
    torch.save(build_model(model, num_classes=classes, in_channels=channels, image_size=size).state_dict(), path)
    assert infer_num_classes(model, str(path), channels, size) == classes
    shape = bench_input(model, str(path), classes=None, channels=channels, size=size)
    assert (shape.classes, shape.origin) == (classes, f"the classifier of {path}")


def test_sidecar_wins_and_options_win_over_it(tmp_path):
    path = tmp_path / "best.safetensors"
    path.write_bytes(b"")
    CheckpointSidecar(model="compact_cnn", num_classes=4, in_channels=1, image_size=(12, 12), mean=(0.5,), std=(0.5,),
                      class_names=("a", "b", "c", "d"), data_spec="x", data_fingerprint="f").save(path)
    shape = bench_input("compact_cnn", str(path), classes=None, channels=None, size=None)
    assert (shape.classes, shape.channels, shape.size) == (4, 1, 12) and "sidecar" in shape.origin
    assert bench_input("compact_cnn", str(path), classes=9, channels=None, size=20).data_spec() == \
        "synthetic:classes=9,channels=1,size=20"


def test_without_weights_the_defaults_apply():
    shape = bench_input("resnet18", None, classes=None, channels=None, size=None)
    assert (shape.classes, shape.channels, shape.size) == (1000, 3, 224)


def test_a_checkpoint_without_a_classifier_asks_for_the_count(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match="--num-classes"):
        bench_input("compact_cnn", str(path), classes=None, channels=1, size=8)
