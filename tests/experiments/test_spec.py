"""The experiment file: validated, versioned, round-trips through YAML, unknown keys named."""

from __future__ import annotations

import json

import pytest
import yaml

from quantlens.errors import ConfigError
from quantlens.experiments.spec import ExperimentSpec, load_spec, spec_from_dict


def test_yaml_round_trip(tmp_path):
    spec = spec_from_dict({"name": "x", "data": {"source": "digits", "augment": ["flip"], "mean": [0.1], "std": [0.2]},
                           "model": {"name": "compact_cnn", "options": {"dropout": 0.1}},
                           "train": {"enabled": True, "optimizer": "sgd", "epochs": 3}})
    path = tmp_path / "e.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec
    assert spec.train.lr == 0.05  # the sgd default, resolved and written out


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
