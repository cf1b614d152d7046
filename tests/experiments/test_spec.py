"""The experiment file: validated, versioned, round-trips through YAML, unknown keys named."""

from __future__ import annotations

import json

import pytest
import yaml

from quantlens.errors import ConfigError
from quantlens.experiments.spec import ExperimentSpec, load_spec, load_spec_with_notes, spec_from_dict


def test_yaml_round_trip(tmp_path):
    spec = spec_from_dict({"name": "x", "data": {"source": "digits", "augment": ["flip"], "mean": [0.1], "std": [0.2]},
                           "model": {"name": "compact_cnn", "options": {"dropout": 0.1}},
                           "train": {"enabled": True, "optimizer": "sgd", "epochs": 3}})
    path = tmp_path / "e.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec
    assert spec.train.lr == 0.05  # the sgd default, resolved and written out


QUANTIZATION_V2 = [
    {"version": 2, "name": "int8", "format": "int8", "calibration_samples": 64},
    {"format": "mxfp4", "outputs": {"mode": "block"}, "input_ops": "matmul"},
    {"format": "fp8_e4m3", "weights": {"format": "int4", "mode": "tensor", "scale": "pow2"},
     "inputs": {"observer": "dynamic", "rounding": "stochastic"}, "norm": {"mode": "channel"}, "overflow": "inf_nan",
     "include": ["layer*"], "exclude": ["layer3.*"], "quantize_first_layer": False,
     "overrides": [{"match": "layer2.*", "weights": {"format": "mxfp4"}},
                   {"type": "Add", "inputs": {"mode": "none"}}, {"match": "linear", "skip": True}]},
]


def test_yaml_round_trip_with_quantization_entries(tmp_path):
    spec = spec_from_dict({"name": "q", "quantization": QUANTIZATION_V2})
    path = tmp_path / "q.yaml"
    path.write_text(spec.to_yaml())
    again, notes = load_spec_with_notes(path)
    assert again == spec and notes == []
    written = yaml.safe_load(path.read_text())["quantization"]
    assert [q["version"] for q in written] == [2, 2, 2]
    assert written[1]["weights"]["mode"] == "block" and written[1]["outputs"]["block_size"] == 32  # resolved
    assert written[2]["overrides"][0] == {"match": "layer2.*", "skip": False, "weights": {"format": "mxfp4"}}


def test_version_1_entries_read_and_written_as_version_2(tmp_path):
    old = {"version": 1, "quantization": [
        {"format": "int4", "input_format": "int8", "name": "int4 weights, int8 inputs"},
        {"format": "fp8_e4m3", "weight_mode": "tensor", "calibration": "dynamic", "bn_mode": "tensor",
         "overrides": [{"match": "conv1", "input_format": "int8"}]}]}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    spec, notes = load_spec_with_notes(path)
    assert [n.split(":")[0] for n in notes] == ["quantization.0", "quantization.1"]
    assert spec.quantization[1].inputs.observer == "dynamic" and spec.quantization[1].overrides[0].inputs.format \
        == "int8"
    assert spec_from_dict(yaml.safe_load(spec.to_yaml())) == spec
    assert spec.quantization[0].label == "int4 weights, int8 inputs"
    assert spec.quantization[1].label == "w:fp8_e4m3/tensor in:fp8_e4m3/tensor bn:fp8_e4m3/tensor"


def test_unknown_key_named_with_known_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epoch' \(known: enabled, epochs"):
        spec_from_dict({"train": {"epoch": 3}})


def test_bad_value_named():
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        spec_from_dict({"data": {"val_fraction": 2}})


def test_version_checked():
    with pytest.raises(ConfigError, match="version"):
        spec_from_dict({"version": 99})


def test_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source: [digits\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_spec(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec("/nonexistent/x.yaml")


def test_json_schema_is_complete():
    schema = ExperimentSpec.model_json_schema()
    json.dumps(schema)
    assert {"data", "model", "train", "eval", "output", "version"} <= set(schema["properties"])
    assert yaml.safe_load(ExperimentSpec().to_yaml())["version"] == 1
