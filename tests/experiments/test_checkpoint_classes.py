"""A checkpoint evaluated on data that names its classes otherwise is matched by index, and says so."""

from __future__ import annotations

from safetensors.torch import save_file

from quantlens import events
from quantlens.data import load_source
from quantlens.experiments.setup import prepare_model
from quantlens.experiments.spec import spec_from_dict
from quantlens.models.build import build_model
from quantlens.models.sidecar import CheckpointSidecar

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _checkpoint(tmp_path, names):
    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8)
    path = tmp_path / "best.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    CheckpointSidecar(model="compact_cnn", num_classes=10, in_channels=1, image_size=(8, 8), mean=(0.5,), std=(0.5,),
                      class_names=names, data_spec="digits", data_fingerprint="x").save(path)
    return path


def _warnings(tmp_path, names) -> list[str]:
    spec = spec_from_dict({"data": {"source": "digits"}, "device": "cpu",
                           "model": {"name": "compact_cnn", "weights": str(_checkpoint(tmp_path, names))}})
    seen = []
    with events.listening(seen.append):
        prepare_model(spec, load_source("digits"))
    return [e.text for e in seen if isinstance(e, events.Note) and e.level == "warning"]


def test_other_class_names_are_matched_by_index_with_a_warning(tmp_path):
    (line,) = _warnings(tmp_path, WORDS)
    assert "trained on classes ['zero', 'one'," in line and "names its classes ['0', '1'," in line
    assert line.endswith("they are matched by index")


def test_the_same_class_names_say_nothing(tmp_path):
    assert _warnings(tmp_path, tuple(str(i) for i in range(10))) == []
