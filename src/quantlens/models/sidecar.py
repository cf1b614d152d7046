"""The JSON file saved beside a checkpoint that quantlens trained (`best.safetensors` -> `best.json`).

It records what the weights need to be used correctly later: the model and its options, the
input layout and normalisation, the class names, and which samples it was trained on (dataset
fingerprint and split settings), so that evaluating it later uses the same preprocessing and,
on the same data, the same held-out test samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quantlens.atomic import write_json
from quantlens.data.transforms import INTERPOLATIONS, RESIZE_MODES, ResizeRule
from quantlens.errors import CheckpointError

# A sidecar is a few kB (ImageNet-21k's class names are ~0.4 MB); anything far larger is not one.
_MAX_BYTES = 16 << 20
_SPLIT_KEYS = ("val_fraction", "test_fraction", "split_seed")
_RESIZE_KEYS = ("mode", "scale", "interpolation", "antialias")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is a Python int


def _number(v: Any) -> bool:  # non-finite numbers never get here: the JSON parser refuses them
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(v: Any, positive: bool = False) -> bool:
    return isinstance(v, list) and len(v) in (1, 3) and all(_number(x) and (x > 0 or not positive) for x in v)


def _resize(v: Any) -> bool:
    """{} (the square squash every model had before resize rules were recorded) or a ResizeRule's fields."""
    if v == {}:
        return True
    return (isinstance(v, dict) and sorted(v) == sorted(_RESIZE_KEYS) and v["mode"] in RESIZE_MODES
            and v["interpolation"] in INTERPOLATIONS and isinstance(v["antialias"], bool)
            and (v["scale"] is None or (isinstance(v["scale"], list) and len(v["scale"]) == 2
                                        and all(_int(x) and x > 0 for x in v["scale"]))))


def _split(v: Any) -> bool:
    """{} (no split recorded) or exactly the settings `holdout_split` needs."""
    return v == {} or (isinstance(v, dict) and sorted(v) == sorted(_SPLIT_KEYS) and _int(v["split_seed"])
                       and all(_number(v[k]) and 0 <= v[k] < 1 for k in _SPLIT_KEYS[:2]))


# key -> (test, what the value must be); checked in this order, the first failure is reported.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and v != "", "a model name"),
    "num_classes": (lambda v: _int(v) and v >= 1, "a positive integer"),
    "in_channels": (lambda v: _int(v) and v in (1, 3), "1 or 3"),
    "image_size": (lambda v: isinstance(v, list) and len(v) == 2 and all(_int(x) and x > 0 for x in v),
                   "two positive integers [height, width]"),
    "mean": (_numbers, "a list of 1 or 3 finite numbers"),
    "std": (lambda v: _numbers(v, positive=True), "a list of 1 or 3 positive finite numbers"),
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "data_spec": (lambda v: isinstance(v, str), "a string"),
    "data_fingerprint": (lambda v: isinstance(v, str), "a string"),
    "split": (_split, "{} or an object of val_fraction and test_fraction in [0, 1) and an integer split_seed"),
    "options": (lambda v: isinstance(v, dict), "an object"),
    "resize": (_resize, f"{{}} or an object of mode ({', '.join(RESIZE_MODES)}), scale (null or [height, width]), "
                        f"interpolation ({', '.join(INTERPOLATIONS)}) and antialias (true or false)"),
}
_OPTIONAL = ("split", "options", "resize")  # they have defaults; every other key must be present


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):  # json.loads would silently keep the last one
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError(f"{text} is out of range")
    return value


def _problem(values: Any) -> str | None:
    """What is wrong with the parsed JSON of a sidecar, in one line; None when it is valid."""
    if not isinstance(values, dict):
        return f"the top level must be a JSON object, not {json.dumps(values)[:60]}"
    missing = [k for k in _RULES if k not in values and k not in _OPTIONAL]
    unknown = [k for k in values if k not in _RULES]
    if missing or unknown:
        listed = (("missing", missing), ("unknown", unknown))
        return "; ".join(f"{what} keys: {', '.join(keys)}" for what, keys in listed if keys)
    for key, (test, must_be) in _RULES.items():
        if key in values and not test(values[key]):
            return f"{key} must be {must_be}, not {json.dumps(values[key])[:60]}"
    for key in ("mean", "std"):
        if len(values[key]) != values["in_channels"]:
            return f"{key} has {len(values[key])} values for in_channels {values['in_channels']}"
    if len(values["class_names"]) != values["num_classes"]:
        return f"class_names has {len(values['class_names'])} names for num_classes {values['num_classes']}"
    return None


@dataclass(frozen=True)
class CheckpointSidecar:
    model: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    data_spec: str
    data_fingerprint: str
    split: dict[str, Any] = field(default_factory=dict)  # val_fraction, test_fraction, split_seed
    options: dict[str, Any] = field(default_factory=dict)
    resize: dict[str, Any] = field(default_factory=dict)  # ResizeRule's fields; {}: the default square squash

    @property
    def resize_rule(self) -> ResizeRule:
        """How images reached `image_size` when the weights were trained (a pretrained model's own rule)."""
        if not self.resize:
            return ResizeRule()
        scale = self.resize["scale"]
        return ResizeRule(self.resize["mode"], None if scale is None else tuple(scale), self.resize["interpolation"],
                          self.resize["antialias"])

    @staticmethod
    def path_for(weights: str | Path) -> Path:
        return Path(weights).expanduser().with_suffix(".json")

    def save(self, weights: str | Path) -> Path:
        return write_json(self.path_for(weights), asdict(self))

    @classmethod
    def find(cls, weights: str | Path | None) -> CheckpointSidecar | None:
        """The sidecar of `weights` when one exists beside it."""
        if weights is None:
            return None
        path = cls.path_for(weights)
        if not path.is_file():
            return None
        where = f"{path} (the checkpoint's sidecar)"
        if path.stat().st_size > _MAX_BYTES:
            raise CheckpointError(f"{where} is {path.stat().st_size} bytes, too large to be a sidecar")
        try:
            text = path.read_bytes().decode("utf-8")
            values = json.loads(text, parse_constant=_reject_constant, parse_float=_finite,
                                object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{where} is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise CheckpointError(f"{where} is unreadable: {exc}") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise CheckpointError(f"{where} is not valid JSON: {str(exc).splitlines()[0]}") from None
        problem = _problem(values)
        if problem:
            raise CheckpointError(f"{where} is invalid: {problem}")
        converted = {"image_size": tuple(values["image_size"]), "class_names": tuple(values["class_names"]),
                     "mean": tuple(map(float, values["mean"])), "std": tuple(map(float, values["std"]))}
        return cls(**{**values, **converted})
