"""BenchmarkConfig: validation with the field named, YAML round trip, CLI parsing helpers."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from quantlens.errors import ConfigError
from quantlens.experiments.spec import spec_from_dict
from quantlens.recipes.benchmark import BenchmarkConfig, parse_batch_sizes, parse_name_list, parse_profile_pairs


def build(**values) -> BenchmarkConfig:
    """The `benchmark:` block of an experiment file, validated as the CLI and YAML validate it."""
    return spec_from_dict({"benchmark": values}).benchmark


def test_defaults_are_valid_and_round_trip_through_yaml():
    config = BenchmarkConfig(backends=("torch-fp32", "ort-int8"), batch_sizes=(1, 64),
                             profile=(("torch-fp32", "ort-int8"),))
    again = BenchmarkConfig.model_validate(yaml.safe_load(yaml.safe_dump(config.model_dump(mode="json"))))
    assert again == config
    assert config.baseline_backend == "torch-fp32"
    assert config.profile_batch == 64


def test_batch_size_zero_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="batch_sizes"):
        BenchmarkConfig(batch_sizes=(1, 0))
    with pytest.raises(ConfigError, match=r"benchmark\.batch_sizes.*batch size 0 is not allowed"):
        build(batch_sizes=[1, 0])
    with pytest.raises(ConfigError, match="--batch-sizes: batch size 0"):
        parse_batch_sizes("1,0,64")


def test_unknown_backend_is_refused_listing_the_known_ones():
    with pytest.raises(ConfigError) as info:
        build(backends=["torch-fp32", "ort-int9"])
    message = str(info.value)
    assert "\n" not in message
    assert "benchmark: backends: unknown backend" in message and "'ort-int9'" in message
    assert "known:" in message and "openvino-int8" in message


@pytest.mark.parametrize(("values", "field"), [
    ({"backends": ["ort-fp32"], "stage_backends": ["torch-fp32"]}, "stage_backends"),
    ({"backends": ["ort-fp32", "ort-int8"], "profile": [["ort-fp32", "torch-int8"]]}, "profile"),
    ({"backends": ["ort-fp32", "ort-int8"], "profile": [["ort-int8", "ort-int8"]]}, "profile"),
    ({"backends": ["ort-fp32"], "baseline": "torch-fp32"}, "baseline"),
    ({"backends": ["ort-fp32", "ort-fp32"]}, "repeats"),
    ({"threads": 0}, "threads"),
    ({"batch_sizes": [8, 8]}, "repeats"),
    ({"rounds": 0}, "rounds"),
    ({"warmup_seconds": 3}, "warmup_seconds"),  # unknown keys are errors
])
def test_inconsistent_settings_are_refused(values, field):
    with pytest.raises(ConfigError, match=field):
        build(**values)


def test_baseline_defaults_to_the_first_backend_without_torch_fp32():
    config = BenchmarkConfig(backends=("ort-fp32", "ort-int8"))
    assert config.baseline_backend == "ort-fp32"
    assert config.stage_backend_names == ("ort-fp32",)


def test_cli_parsers():
    assert parse_batch_sizes(" 1, 8,64 ") == (1, 8, 64)
    assert parse_name_list("torch-fp32, ort-int8,") == ("torch-fp32", "ort-int8")
    assert parse_profile_pairs("ort-fp32:ort-int8") == (("ort-fp32", "ort-int8"),)
    with pytest.raises(ConfigError, match="not an integer"):
        parse_batch_sizes("1,eight")
    with pytest.raises(ConfigError, match="pair"):
        parse_profile_pairs("ort-fp32")
