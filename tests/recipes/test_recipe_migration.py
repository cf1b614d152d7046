"""Version-1 quantization entries (flat `{role}_*` keys) read as version 2, with notes returned as data."""

from __future__ import annotations

import copy

import pytest

from quantlens.errors import ConfigError
from quantlens.experiments.spec import migration_notes, spec_from_dict
from quantlens.models.build import build_model
from quantlens.recipes import plan_layers
from quantlens.recipes.migration import entry_version, migrate_quantization_entry
from quantlens.recipes.quantization import QuantizationConfig

# (version 1, the same in version 2)
MIGRATIONS = [
    ({"name": "fp8", "format": "fp8_e4m3", "weight_mode": "tensor", "input_mode": "tensor",
      "calibration_samples": 1000},
     {"version": 2, "name": "fp8", "format": "fp8_e4m3", "calibration_samples": 1000,
      "weights": {"mode": "tensor"}, "inputs": {"mode": "tensor"}}),
    ({"format": "fp4_e2m1", "weight_mode": "block", "input_mode": "block", "weight_chunk_size": 32,
      "input_chunk_size": 16, "scale": "pow2"},
     {"version": 2, "format": "fp4_e2m1", "weights": {"mode": "block", "block_size": 32, "scale": "pow2"},
      "inputs": {"mode": "block", "block_size": 16, "scale": "pow2"}, "outputs": {"scale": "pow2"},
      "norm": {"scale": "pow2"}}),
    ({"version": 1, "format": "mxfp4", "weight_mode": "none", "calibration": "dynamic", "rounding": "stochastic",
      "overrides": [{"match": "conv1", "input_mode": "none"},
                    {"type": "Add", "input_format": "int8", "act_mode": "block", "skip": False}]},
     {"version": 2, "format": "mxfp4", "weights": {"mode": "none", "rounding": "stochastic"},
      "inputs": {"observer": "dynamic", "rounding": "stochastic"},
      "outputs": {"observer": "dynamic", "rounding": "stochastic"}, "norm": {"rounding": "stochastic"},
      "overrides": [{"match": "conv1", "inputs": {"mode": "none"}},
                    {"type": "Add", "skip": False, "inputs": {"format": "int8"}, "outputs": {"mode": "block"}}]}),
    ({"format": "fp8_e4m3", "bn_mode": "channel", "bn_format": "int8", "act_format": "int8", "act_mode": "tensor",
      "act_chunk_size": 16, "weight_format": "int4", "input_format": "int8", "include": ["layer*"],
      "overrides": [{"match": "linear", "weight_format": "mxfp4"}]},
     {"version": 2, "format": "fp8_e4m3", "include": ["layer*"], "weights": {"format": "int4"},
      "inputs": {"format": "int8"}, "outputs": {"format": "int8", "mode": "tensor", "block_size": 16},
      "norm": {"format": "int8", "mode": "channel"},
      "overrides": [{"match": "linear", "weights": {"format": "mxfp4"}}]}),
]


@pytest.mark.parametrize(("old", "new"), MIGRATIONS)
def test_version_1_entries_migrate(old, new):
    kept = copy.deepcopy(old)
    migrated, notes = migrate_quantization_entry(old)
    assert migrated == new and old == kept  # the input is not changed
    assert len(notes) == 1 and notes[0].startswith("version-1 entry read as version 2 (")
    assert QuantizationConfig(**old) == QuantizationConfig(**new)
    assert migrate_quantization_entry(new) == (new, [])  # version 2 stays as it is


@pytest.mark.parametrize(("old", "new"), MIGRATIONS)
def test_version_1_and_2_plan_the_same_layers(old, new):
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=16)
    before, after = plan_layers(model, QuantizationConfig(**old)), plan_layers(model, QuantizationConfig(**new))
    assert before.layers == after.layers and before.skipped == after.skipped and before.layers


def test_the_notes_name_what_moved():
    _, (note,) = migrate_quantization_entry(MIGRATIONS[2][0])
    for moved in ("weight_mode -> weights.mode", "calibration -> inputs.observer, outputs.observer",
                  "rounding -> weights.rounding, inputs.rounding, outputs.rounding, norm.rounding",
                  "overrides.0.input_mode -> overrides.0.inputs.mode",
                  "overrides.1.act_mode -> overrides.1.outputs.mode"):
        assert moved in note


@pytest.mark.parametrize(("entry", "version"), [
    ({}, 2), ({"format": "int8", "calibration_samples": 8}, 2), ({"weights": {"mode": "none"}}, 2),
    ({"weight_mode": "none"}, 1), ({"scale": "pow2"}, 1), ({"calibration": "dynamic"}, 1),
    ({"overrides": [{"match": "a", "input_mode": "none"}]}, 1), ({"overrides": 3}, 2),
    ({"version": 1}, 1), ({"version": 2, "weight_mode": "none"}, 2), ({"version": True}, None),
    ({"version": "1"}, None),
])
def test_an_entry_without_version_is_read_by_its_keys(entry, version):
    assert entry_version(entry) == version


def test_notes_are_data_for_the_caller(capsys):
    raw = {"quantization": [{"format": "int8"}, {"format": "int4", "input_format": "int8"},
                            {"version": 1, "format": "fp8_e4m3"}, "not an entry"]}
    notes = migration_notes(raw)
    assert [n.split(":")[0] for n in notes] == ["quantization.1", "quantization.2"]
    assert "input_format -> inputs.format" in notes[0] and "no key renamed" in notes[1]
    assert migration_notes({"quantization": {"weight_mode": "none"}})[0].startswith("quantization.0: ")
    assert migration_notes({"quantization": 3}) == migration_notes([]) == migration_notes({}) == []
    spec_from_dict({"quantization": raw["quantization"][:3]})
    assert capsys.readouterr() == ("", "")  # the library prints nothing


@pytest.mark.parametrize(("entry", "message"), [
    ({"version": 2, "weight_mode": "tensor"}, "quantization.0: a version-2 entry holds version-1 keys (weight_mode)"),
    ({"version": 2, "overrides": [{"match": "a", "input_mode": "none"}]},
     "a version-2 entry holds version-1 keys (overrides.0.input_mode)"),
    ({"version": 1, "weights": {"mode": "tensor"}}, "quantization.0: a version-1 entry holds version-2 keys (weights)"),
    ({"weight_mode": "tensor", "weights": {"mode": "channel"}},
     "quantization.0: weight_mode (version 1) and weights.mode (version 2) both set weights.mode"),
    ({"scale": "pow2", "norm": {"scale": "fp32"}}, "scale (version 1) and norm.scale (version 2) both set"),
    ({"weight_mode": "rows"}, "quantization.0.weights.mode: Input should be"),  # named as version 2 names it
    ({"bn_mode": "block"}, "quantization.0.norm.mode: Input should be 'none', 'tensor' or 'channel'"),
    ({"overrides": [{"match": "a", "bn_mode": "tensor"}]}, "unknown key 'quantization.0.overrides.0.bn_mode'"),
    ({"version": 3}, "quantization.0.version: Input should be 2"),
])
def test_contradictions_refused(entry, message):
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"quantization": [entry]})
    assert message in str(info.value)


def test_an_old_entry_being_edited_may_hold_both_kinds_of_keys():
    cfg = QuantizationConfig(input_mode="none", weights={"format": "int4"}, overrides=[{"match": "a", "weight_mode":
                                                                                        "tensor"}])
    assert cfg.label == "w:int4/channel" and cfg.overrides[0].weights.mode == "tensor"
