"""A quantization recipe as the Python API takes it: a `QuantizationConfig`, a dict written as a
YAML `quantization:` entry, or a format name ("int8", "fp8_e4m3", "mxfp4", ... `quantlens formats`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from quantlens.errors import ConfigError
from quantlens.recipes import QuantizationConfig
from quantlens.recipes.validation import describe_validation_error


def as_recipe(recipe: Any, what: str = "recipe") -> QuantizationConfig:
    """`recipe` as a validated QuantizationConfig; a one-line ConfigError naming the field otherwise."""
    if isinstance(recipe, QuantizationConfig):
        return recipe
    if isinstance(recipe, str):
        values: Any = {"format": recipe}
    elif isinstance(recipe, Mapping):
        values = dict(recipe)
    else:
        raise ConfigError(f"{what} is {type(recipe).__name__}; expected a QuantizationConfig, a dict as in a YAML "
                          f"quantization entry, or a format name such as 'int8'")

    try:
        return QuantizationConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, what, QuantizationConfig)) from None
