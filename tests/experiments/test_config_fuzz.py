"""Seeded fuzzing of experiment files through `quantlens run --check`: no traceback, and every
refusal is one line that names a field of the schema (or, for a file that is not a config at all,
the file)."""

from __future__ import annotations

import copy
import random
import re

import pytest
import yaml
from pydantic import BaseModel

from quantlens.experiments.spec import ExperimentSpec
from quantlens.recipes.base import block_class

BASE = {
    "name": "fuzz", "seed": 1,
    "data": {"source": "digits", "val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0, "augment": ["flip"]},
    "model": {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}},
    "train": {"enabled": True, "epochs": 1, "lr": 0.01, "optimizer": "sgd", "warmup_epochs": 0.5},
    "eval": {"batch_size": 64, "split": "auto"},
    "quantization": [{"version": 2, "format": "int8", "weights": {"mode": "channel"}, "calibration_samples": 32,
                      "exclude": ["features.0.*"],
                      "overrides": [{"match": "classifier", "weights": {"format": "int4"}}]}],
    "analysis": {"layerwise_samples": 16},
    "benchmark": {"backends": ["torch-fp32"], "batch_sizes": [1, 4], "rounds": 2, "max_call_seconds": 5.0},
}

ODD_VALUES = [None, True, False, 0, -1, 1, 3, 2.5, -0.0, 1e308, 2**63, 2**70, -(2**70), float("inf"), float("-inf"),
              float("nan"), "", " ", "yes", "2", "0.1", "int8", "mxfp4", "none", "block", "x" * 300, "a\x00b",
              "../../x", "é", [], [1, "a"], [[1, 2]], ["int8"], {}, {"k": 1}, {"format": "int8"}, 10**6]


# Values that are right for many fields, so that a good share of the generated files pass.
LEGAL_VALUES = [1, 2, 8, 0.1, 0.5, True, False, "int8", "fp8_e4m3", "tensor", "channel", "auto", "max", ["flip"],
                "digits", "compact_cnn", ["features.*"], ["torch-fp32"]]


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of the schema as a dotted path (tuples of blocks at index 0)."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        inner = block_class(field.annotation)
        if inner is not None:
            repeated = "tuple" in str(field.annotation)
            paths.extend(_leaf_paths(inner, f"{path}.0." if repeated else f"{path}."))
    return paths


PATHS = _leaf_paths(ExperimentSpec)


def _leaf_field(path: str):
    """The pydantic field a dotted schema path ends at (indices skipped), or None."""
    model, field = ExperimentSpec, None
    for part in path.split("."):
        if part.isdigit():
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = block_class(field.annotation)
    return field


def _schema_value(path: str, rng: random.Random):
    """A value the schema itself suggests for the field: one of its choices, or its default."""
    field = _leaf_field(path)
    if field is None:
        return None
    choices = [a for arg in getattr(field.annotation, "__args__", ()) for a in (getattr(arg, "__args__", None) or [arg])
               if isinstance(a, (str, int, float)) and not isinstance(a, type)]
    if choices:
        return rng.choice(choices)
    if field.is_required():  # no default to suggest (e.g. a pass entry's name)
        return None
    default = field.get_default(call_default_factory=True)
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else \
        list(default) if isinstance(default, tuple) else default


def _resolves(path: str) -> bool:
    """Whether a dotted path names a field of the schema (indices into lists of blocks allowed)."""
    model: type[BaseModel] | None = ExperimentSpec
    parts = path.split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        if model is None:
            return False
        field = model.model_fields.get(part)
        if field is None:
            return False
        inner = block_class(field.annotation)
        i += 1
        if inner is not None and i < len(parts) and parts[i].isdigit():
            i += 1
        if inner is None:
            return True  # a leaf (or a free mapping such as model.options, or an index into a list of values)
        model = inner
    return True


def _set(document: dict, path: str, value) -> None:
    """document[path] = value, building (or replacing with) the lists and mappings on the way: an earlier
    mutation may have put a scalar where this path goes through a block."""
    parts = path.split(".")
    node = document
    for i, part in enumerate(parts[:-1]):
        want = list if parts[i + 1].isdigit() else dict
        if part.isdigit():
            index = int(part)
            while len(node) <= index:
                node.append({})
            if not isinstance(node[index], want):
                node[index] = want()
            node = node[index]
        else:
            if not isinstance(node.get(part), want):
                node[part] = want()
            node = node[part]
    if parts[-1].isdigit():
        while len(node) <= int(parts[-1]):
            node.append({})
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _mutate(rng: random.Random) -> dict:
    document = copy.deepcopy(BASE)
    for _ in range(rng.choice((1, 1, 1, 2))):
        path = rng.choice(PATHS)
        action = rng.random()
        if action < 0.45:
            _set(document, path, rng.choice(ODD_VALUES))
        elif action < 0.65:
            _set(document, path, rng.choice(LEGAL_VALUES))
        elif action < 0.8:
            _set(document, path, _schema_value(path, rng))
        elif action < 0.9:
            _set(document, path.rsplit(".", 1)[0] + ".no_such_key" if "." in path else "no_such_key", 1)
        else:
            _set(document, path, copy.deepcopy(rng.choice(list(BASE.values()))))
    return document


def _named_field(line: str, origin: str) -> str | None:
    """The field an error line starts with (after 'error: ' and the file it came from)."""
    text = line.removeprefix("error: ").removeprefix(f"{origin}: ")
    if text.startswith("unknown key '"):  # named with its block, which must exist
        key = text.split("'")[1]
        return key.rsplit(".", 1)[0] if "." in key else "name"
    found = re.match(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)[:( ]", text)
    return found.group(1) if found else None


@pytest.mark.parametrize("chunk", range(4))
def test_fuzzed_configs_never_crash_and_name_the_field(cli, tmp_path, monkeypatch, chunk):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(1000 + chunk)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    assert cli("run", "--check", base).code == 0  # the generator starts from a valid file
    outcomes = {0: 0, 2: 0}
    for i in range(80):
        document = _mutate(rng)
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        result = cli("run", "--check", path)
        assert result.code in (0, 2), (document, result.err)
        outcomes[result.code] += 1
        if result.code == 2:
            assert len(result.error_lines) == 1 and "Traceback" not in result.err, (document, result.err)
            field = _named_field(result.error_lines[0], str(path))
            assert field is not None and _resolves(field), (document, result.error_lines[0])
    assert outcomes[2] > 20 and outcomes[0] >= 5  # the generator exercises both sides
    assert not (tmp_path / "runs").exists()  # --check writes nothing


RAW_DOCUMENTS = ["", "# c\n", "[]", "0", "false", "''", "null", "[" * 500, "{a: " * 400 + "1" + "}" * 400,
                 "a: 1\na: 2\n", "data: {source: digits}\ndata: {source: digits}\n", "\t- x", "key: [unclosed",
                 "!!python/object:os.system {}", "? [a]\n: b\n", "*undefined_alias", "&a [*a]"]


@pytest.mark.parametrize("text", RAW_DOCUMENTS)
def test_documents_that_are_no_config_name_the_file(cli, tmp_path, text):
    path = tmp_path / "raw.yaml"
    path.write_text(text)
    result = cli("run", "--check", path)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert str(path) in result.error_lines[0]


def test_random_bytes_never_crash(cli, tmp_path):
    rng = random.Random(7)
    for i in range(40):
        path = tmp_path / f"b{i}.yaml"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        result = cli("run", "--check", path)
        assert result.code == 2 and len(result.error_lines) == 1 and str(path) in result.error_lines[0], result.err
