"""Any config field by dotted path, for sweeps: read, set (validated), and one-line errors naming the path."""

from __future__ import annotations

import pytest
import yaml

from quantlens.errors import ConfigError
from quantlens.experiments.spec import spec_from_dict
from quantlens.recipes.paths import get_field, with_field
from quantlens.recipes.quantization import QuantizationConfig

SPEC = {"name": "sweep", "data": {"source": "digits", "augment": ["flip"]},
        "model": {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}},
        "quantization": [{"format": "int8"},
                         {"format": "fp8_e4m3", "weights": {"format": "int4"},
                          "overrides": [{"match": "classifier", "weights": {"scale": "pow2"}}]}]}


@pytest.fixture
def spec():
    return spec_from_dict(SPEC)


def test_get_field_reads_blocks_indices_and_mappings(spec):
    assert get_field(spec, "name") == "sweep" and get_field(spec, "train.epochs") == spec.train.epochs
    assert get_field(spec, "data.augment.0") == "flip" and get_field(spec, "model.options.widths") == [4, 8, 8]
    assert get_field(spec, "quantization.1.weights.format") == "int4"
    assert get_field(spec, "quantization.1.overrides.0.weights.scale") == "pow2"
    assert get_field(spec, "quantization.0") is spec.quantization[0]
    assert get_field(spec.quantization[0], "weights.mode") == "channel"  # any block, defaults resolved


def test_with_field_returns_a_new_validated_config(spec):
    changed = with_field(spec, "quantization.0.weights.format", "int4")
    assert changed.quantization[0].label == "w:int4/channel in:int8/tensor"
    assert spec.quantization[0].weights.format == "int8"  # the original is untouched
    assert changed.quantization[1] == spec.quantization[1] and changed.model == spec.model
    assert with_field(spec, "train.epochs", 7).train.epochs == 7
    assert with_field(spec, "data.augment.0", "crop").data.augment == ("crop",)
    assert with_field(spec, "model.options.dropout", 0.2).model.options == {"widths": [4, 8, 8], "dropout": 0.2}
    assert with_field(spec, "quantization.1.overrides.0.weights.format", "int2").quantization[1].overrides[0]\
        .weights.format == "int2"
    assert with_field(spec.quantization[0], "inputs.mode", "none").label == "w:int8/channel"


def test_a_changed_format_brings_its_own_defaults(spec):
    mx = with_field(spec, "quantization.0.weights.format", "mxfp4").quantization[0]
    assert (mx.weights.mode, mx.weights.block_size) == ("block", 32)
    back = with_field(with_field(spec, "quantization.0.weights.format", "nvfp4"), "quantization.0.weights.format",
                      "int8").quantization[0]
    assert back == spec.quantization[0]  # nothing of nvfp4's defaults stays behind
    entry = with_field(spec, "quantization.1.format", "mxfp4").quantization[1]
    assert entry.label == "w:int4/channel in:mxfp4/block32"  # the weights' own format stays


def test_a_sweep_reads_the_same_from_a_written_config(spec, tmp_path):
    again = spec_from_dict(yaml.safe_load(spec.to_yaml()))  # every value written out, e.g. a run's config.yaml
    for path, value in (("quantization.0.format", "nvfp4"), ("quantization.1.weights.format", "mxfp4"),
                        ("quantization.1.format", "int8")):
        assert with_field(again, path, value) == with_field(spec, path, value), path


def test_a_mode_written_on_purpose_is_kept_and_checked(spec):
    pinned = with_field(spec, "quantization.0.weights.mode", "tensor")
    with pytest.raises(ConfigError, match=r"^quantization\.0\.weights: mxfp4 is a block format .*\(with "
                                          r"quantization\.0\.weights\.format = 'mxfp4'\)$"):
        with_field(pinned, "quantization.0.weights.format", "mxfp4")


@pytest.mark.parametrize(("path", "message"), [
    ("quantization.0.weight.format", "quantization.0.weight.format: no field 'weight' in quantization.0 (known: "
                                     "version, name, format, weights, inputs, outputs, norm, input_ops,"),
    ("quantization.2.format", "quantization.2.format: no index '2' in quantization, a list of 2 (indices 0..1)"),
    ("quantization.x.format", "no index 'x' in quantization"),
    ("data.augment.3", "data.augment.3: no index '3' in data.augment, a list of 1 (indices 0..0)"),
    ("quantization.0.format.bits", "quantization.0.format.bits: quantization.0.format is a value ('int8')"),
    ("model.options.depth.x", "model.options.depth.x: no key 'depth' in model.options (known: widths)"),
    ("nope", "nope: no field 'nope' in the top level (known: version, name, seed,"),
    ("", "'' is not a field path"),
    ("train..epochs", "'train..epochs' is not a field path"),
])
def test_unknown_paths_are_one_line_naming_the_path(spec, path, message):
    for call in (lambda: get_field(spec, path), lambda: with_field(spec, path, 1)):
        with pytest.raises(ConfigError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("path", "value", "message"), [
    ("quantization.0.weights.format", "fp9", "quantization.0.weights.format: unknown number format 'fp9'"),
    ("quantization.0.inputs.observer", "percentil", "quantization.0.inputs.observer: unknown observer 'percentil'; "
                                                     "did you mean percentile"),
    ("train.epochs", "3", "train.epochs: Input should be a valid integer"),
    ("quantization.1.name", "w:int8/channel in:int8/tensor", "entries must differ"),
])
def test_refused_values_name_the_field_and_the_change(spec, path, value, message):
    with pytest.raises(ConfigError) as info:
        with_field(spec, path, value)
    assert message in str(info.value) and f"(with {path} = {value!r})" in str(info.value)


def test_a_whole_entry_can_be_replaced(spec):
    changed = with_field(spec, "quantization.1", {"format": "nvfp4"})
    assert changed.quantization[1] == QuantizationConfig(format="nvfp4")
