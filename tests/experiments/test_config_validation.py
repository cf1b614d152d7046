"""Configs are refused with one line naming the field, never run as something else or crash.

Each class of the issue gets at least three examples: files that are not a mapping of blocks,
unreadable or hostile YAML, strict types, non-finite and oversized numbers, names and paths,
quantization patterns that select nothing, and values that would be capped silently.
"""

from __future__ import annotations

import json

import pytest
import yaml

from quantlens import events
from quantlens.errors import ConfigError
from quantlens.experiments.config_file import parse_config_text, read_config_file
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import load_spec, spec_from_dict

TINY = {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}}


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n   \n", "---\n", "# a\n# b\n---\n"])
def test_empty_or_comment_only_file_refused(tmp_path, text):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="empty"):
        load_spec(path)


@pytest.mark.parametrize("text", ["[]", "0", "false", "''", "null", "- data: digits", "just a string", "3.5"])
def test_top_level_not_a_mapping_refused(tmp_path, text):
    path = tmp_path / "e.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_spec(path)


@pytest.mark.parametrize("data", [b"name: caf\xe9\n", b"\xff\xfe\x00n\x00a\x00m\x00e\x00", b"data:\n  source: \x80\n"])
def test_non_utf8_file_refused(tmp_path, data):
    path = tmp_path / "e.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_spec(path)


DEEP_MAPPING = "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200))


@pytest.mark.parametrize("text", ["[" * 1000 + "]" * 1000, DEEP_MAPPING, "{a: " * 500 + "1" + "}" * 500])
def test_deeply_nested_yaml_refused(text):
    with pytest.raises(ConfigError, match="nested"):
        parse_config_text(text, "deep.yaml")


@pytest.mark.parametrize("text", ["name: a\nname: b\n", "train:\n  epochs: 2\n  epochs: 3\n",
                                  "quantization:\n  - format: int8\n    format: fp8_e4m3\n"])
def test_duplicate_keys_refused(text):
    with pytest.raises(ConfigError, match="duplicate key"):
        parse_config_text(text, "dup.yaml")


def test_merge_keys_still_work():
    values = parse_config_text("base: &b {format: int8}\nquantization:\n  - <<: *b\n    name: x\n", "m.yaml")
    assert values["quantization"][0] == {"format": "int8", "name": "x"}


def test_alias_bomb_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(ConfigError, match="expands to"):
        parse_config_text("\n".join(lines) + "\n", "bomb.yaml")


@pytest.mark.parametrize("text", ["1: x\n", "? [a, b]\n: c\n", "null: 3\n", "2024-01-01: x\n"])
def test_non_string_keys_refused(text):
    with pytest.raises(ConfigError, match="not a string|not valid YAML"):
        parse_config_text(text, "k.yaml")


def test_missing_config_and_folder_as_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not a file"):
        read_config_file(tmp_path)


@pytest.mark.parametrize("value", [True, None, ["int8"], {"name": "int8"}, 8])
def test_format_of_the_wrong_type_names_the_field(value):
    with pytest.raises(ConfigError, match=r"quantization\.0\.format"):
        spec_from_dict({"quantization": [{"format": value}]})


@pytest.mark.parametrize(("values", "field"), [
    ({"eval": {"enabled": "yes"}}, "eval.enabled"),
    ({"train": {"epochs": "2"}}, "train.epochs"),
    ({"seed": True}, "seed"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"data": {"split_seed": "0"}}, "data.split_seed"),
    ({"data": {"channels": True}}, "data.channels"),
    ({"benchmark": {"threads": True}}, "benchmark.threads"),
    ({"train": {"lr": "0.1"}}, "train.lr"),
    ({"quantization": [{"quantize_first_layer": 1}]}, "quantization.0.quantize_first_layer"),
])
def test_strict_types_no_coercion(values, field):
    with pytest.raises(ConfigError, match=rf"config: {field}: "):
        spec_from_dict(values)


@pytest.mark.parametrize(("values", "field"), [
    ({"seed": 2**64}, "seed"),
    ({"data": {"split_seed": -(2**63) - 1}}, "data.split_seed"),
    ({"train": {"epochs": 10**30}}, "train.epochs"),
    ({"benchmark": {"rounds": 2**100}}, "benchmark.rounds"),
])
def test_integers_beyond_64_bits_refused(values, field):
    with pytest.raises(ConfigError, match=rf"{field}: .*64-bit"):
        spec_from_dict(values)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize(("path", "wrap"), [
    ("train.lr", lambda v: {"train": {"lr": v}}),
    ("train.warmup_epochs", lambda v: {"train": {"warmup_epochs": v}}),
    ("benchmark.max_call_seconds", lambda v: {"benchmark": {"max_call_seconds": v}}),
    ("data.std", lambda v: {"data": {"mean": [0.5], "std": [v]}}),
    ("data.mean", lambda v: {"data": {"mean": [v], "std": [0.5]}}),
    ("model.options", lambda v: {"model": {"name": "compact_cnn", "options": {"dropout": v}}}),
])
def test_non_finite_floats_refused_in_every_field(path, wrap, bad):
    with pytest.raises(ConfigError, match=rf"{path}: .*finite"):
        spec_from_dict(wrap(bad))


def test_non_finite_floats_from_a_yaml_file(tmp_path):
    for text, field in (("train: {lr: .inf}\n", "train.lr"), ("train: {warmup_epochs: .nan}\n", "train.warmup_epochs"),
                        ("data: {mean: [-.inf], std: [1.0]}\n", "data.mean")):
        path = tmp_path / "f.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=field):
            load_spec(path)


@pytest.mark.parametrize(("values", "field"), [
    ({"model": {"weights": ""}}, "model.weights"),
    ({"model": {"weights": "   "}}, "model.weights"),
    ({"output": {"root": ""}}, "output.root"),
    ({"data": {"source": ""}}, "data.source"),
])
def test_empty_paths_refused(values, field):
    with pytest.raises(ConfigError, match=rf"{field}: .*empty"):
        spec_from_dict(values)


@pytest.mark.parametrize(("values", "field"), [
    ({"name": "x" * 256}, "name"),
    ({"output": {"name": "é" * 130}}, "output.name"),
    ({"quantization": [{"name": "q" * 5000}]}, "quantization.0.name"),
    ({"data": {"source": "imagefolder:/" + "d" * 5000}}, "data.source"),
])
def test_overlong_strings_refused(values, field):
    with pytest.raises(ConfigError, match=rf"{field}: "):
        spec_from_dict(values)


@pytest.mark.parametrize("side", [4097, 10**6, 2**40])
def test_huge_image_size_refused_by_the_schema(side):
    with pytest.raises(ConfigError, match="data.image_size"):
        spec_from_dict({"data": {"image_size": side}})


def test_image_size_that_does_not_fit_memory_refused_before_any_run_folder(tmp_path, monkeypatch):
    import quantlens.experiments.setup.memory as setup

    monkeypatch.setattr(setup, "MEMORY_SHARE", 1e-9)  # as if the machine had almost no memory left
    spec = spec_from_dict({"data": {"source": "digits", "image_size": 64}, "model": TINY,
                           "output": {"root": str(tmp_path)}})
    with pytest.raises(ConfigError, match="data.image_size: 1797 images at 1x64x64"):
        run_experiment(spec)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("make_root", [
    lambda tmp: tmp / "a-file" / "runs",  # a file stands where a folder must be
    lambda tmp: tmp / "a-file",
    lambda tmp: tmp / "a-file" / "x" / "y",
])
def test_unwritable_output_root_refused(tmp_path, make_root):
    (tmp_path / "a-file").write_text("not a folder")
    spec = spec_from_dict({"model": TINY, "output": {"root": str(make_root(tmp_path))}})
    with pytest.raises(ConfigError, match="output.root: cannot write runs to"):
        run_experiment(spec)


def _quantized(root, **entry):
    return spec_from_dict({"data": {"source": "digits"}, "model": TINY, "output": {"root": str(root)},
                           "quantization": [{"format": "int8", "calibration_samples": 64, **entry}],
                           "analysis": {"layerwise_samples": 0, "compliance_samples": 0}})


@pytest.mark.parametrize(("entry", "field"), [
    ({"include": ["backbone.*"]}, "quantization.0.include.0"),
    ({"include": ["features.*", "nothing*"]}, "quantization.0.include.1"),
    ({"exclude": ["no_such_layer"]}, "quantization.0.exclude.0"),
    ({"overrides": [{"match": "head.*", "weight_format": "int4"}]}, "quantization.0.overrides.0"),
    ({"overrides": [{"type": "Conv3d", "skip": True}]}, "quantization.0.overrides.0"),
    ({"weight_mode": "none", "input_mode": "none"}, "quantization.0"),
])
def test_patterns_that_select_nothing_refused_before_any_run_folder(tmp_path, entry, field):
    with pytest.raises(ConfigError, match=rf"^{field} \(.*\): .*(matches none|quantizes no layer)"):
        run_experiment(_quantized(tmp_path, **entry))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("asked", [10**9, 5000, 2**62])
def test_capped_calibration_is_reported(tmp_path, asked):
    messages = []
    with events.listening(lambda event: messages.append(getattr(event, "text", ""))):
        outcome = run_experiment(_quantized(tmp_path, calibration_samples=asked))
    data = json.loads((outcome.run_dir / "data.json").read_text())
    capped = data["capped"]["quantization.0.calibration_samples"]
    assert capped["requested"] == asked and capped["used"] == data["calibration"]["n"] < asked
    assert any(f"quantization.0.calibration_samples asks for {asked}" in m for m in messages)
    coverage = json.loads(next((outcome.run_dir / "quantization").glob("01-*/coverage.json")).read_text())
    assert coverage["calibration_samples_requested"] == asked
    assert coverage["calibration_samples"] == data["calibration"]["n"]


@pytest.mark.parametrize(("block", "field"), [
    ({"analysis": {"layerwise_samples": 10**6}}, "analysis.layerwise_samples"),
    ({"analysis": {"compliance_samples": 2**40}}, "analysis.compliance_samples"),
    ({"benchmark": {"backends": ["torch-fp32"], "batch_sizes": [1], "rounds": 1, "agreement_samples": 10**7,
                    "stages": False, "warmup_until_steady": False}}, "benchmark.agreement_samples"),
])
def test_other_capped_sample_counts_are_reported(tmp_path, block, field):
    spec = spec_from_dict({"data": {"source": "digits"}, "model": TINY, "output": {"root": str(tmp_path)},
                           "quantization": [{"format": "int8", "calibration_samples": 64}], **block})
    outcome = run_experiment(spec)
    capped = json.loads((outcome.run_dir / "data.json").read_text())["capped"]
    assert capped[field]["used"] < capped[field]["requested"]


def test_resolved_config_round_trips_through_yaml(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits", "augment": ["flip"]}, "model": TINY,
                           "quantization": [{"format": "int8", "exclude": ["x*"]}]})
    again = spec_from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec
