"""`eval.positive_class` / `--positive-class`: a binary task's positive class by index or name, resolved
against the data's classes, refused for more than two classes, and said wherever results are shown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from quantlens.data import load_source
from quantlens.errors import ConfigError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import EvalConfig, load_spec, spec_from_dict

SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}
PNEUMONIA = ["normal", "pneumonia"]


@pytest.fixture(scope="module")
def binary_npz(tmp_path_factory) -> Path:
    """The digits 0 and 1 as a MedMNIST-style file whose stem gives PneumoniaMNIST's class names:
    'normal' (0) and 'pneumonia' (1). Test split only, 360 images of 8x8."""
    digits = load_source("digits")
    keep = digits.labels < 2
    path = tmp_path_factory.mktemp("data") / "pneumoniamnist_digits.npz"
    np.savez(path, test_images=digits.images[keep, ..., 0], test_labels=digits.labels[keep, None])
    return path


def _eval(value) -> EvalConfig:
    return EvalConfig.model_validate({} if value is None else {"positive_class": value})


# ---------------------------------------------------------------- resolution

@pytest.mark.parametrize("value, index", [(None, 1), (0, 0), (1, 1), ("0", 0), ("1", 1), ("normal", 0),
                                          ("pneumonia", 1), (" 1 ", 1)])
def test_index_or_name_resolves(value, index):
    assert _eval(value).positive_index(PNEUMONIA, "data") == index


def test_a_name_wins_over_an_index_it_spells():
    # folders named "1" and "0": the string "1" is the class named so (index 0); the int 1 is index 1
    assert _eval("1").positive_index(["1", "0"], "data") == 0
    assert _eval(1).positive_index(["1", "0"], "data") == 1


@pytest.mark.parametrize("value, problem", [(2, "is 2, which is not a class index"),
                                            ("2", "is '2', which is not a class index"),
                                            ("Pneumonia", "is 'Pneumonia', which names no class"),
                                            ("cat", "is 'cat', which names no class")])
def test_unknown_name_or_index_out_of_range_lists_the_classes(value, problem):
    with pytest.raises(ConfigError) as exc:
        _eval(value).positive_index(PNEUMONIA, "medmnist:x.npz")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("eval.positive_class ") and problem in message
    assert "(classes: 0: normal, 1: pneumonia)" in message


def test_more_than_two_classes_refuses_a_given_value_and_keeps_the_default_silently():
    names = [str(c) for c in range(10)]
    assert _eval(None).positive_index(names, "digits") == 1  # unused by multi-class metrics
    for value in (0, 3, "3"):
        with pytest.raises(ConfigError, match=r"eval.positive_class is .*binary tasks only and digits has 10 "
                                              r"classes \(0: 0, 1: 1, .*9: 9\); leave it out"):
            _eval(value).positive_index(names, "digits")


def test_long_class_lists_are_cut():
    names = [f"class{i}" for i in range(100)]
    with pytest.raises(ConfigError) as exc:
        _eval("x").positive_index(names, "big")
    assert "11: class11, ... (100 classes)" in str(exc.value)


@pytest.mark.parametrize("value, problem", [(-1, "a class index is 0 or more"), ("", "an empty class name"),
                                            (True, "positive_class"), (1.0, "positive_class")])
def test_bad_values_are_refused_when_the_config_is_read(value, problem):
    with pytest.raises(ConfigError, match=problem):
        spec_from_dict({"eval": {"positive_class": value}})


# ---------------------------------------------------------------- in a run

def _run(root: Path, data: str, positive=None) -> Path:
    eval_block = {"split": "test"} if positive is None else {"split": "test", "positive_class": positive}
    spec = spec_from_dict({"name": "t", "device": "cpu", "data": {"source": data}, "model": SMALL_MODEL,
                           "eval": eval_block, "output": {"root": str(root)}})
    return run_experiment(spec).run_dir


def test_the_run_uses_reports_and_records_the_resolved_class(tmp_path, binary_npz):
    data = f"medmnist:{binary_npz}"
    by_default, by_name, by_index = (_run(tmp_path / "runs", data, p) for p in (None, "normal", 0))
    metrics = {run: json.loads((run / "metrics.json").read_text()) for run in (by_default, by_name, by_index)}
    assert metrics[by_default]["positive_class"] == "pneumonia"
    assert metrics[by_name]["positive_class"] == metrics[by_index]["positive_class"] == "normal"
    # sensitivity is the positive class's recall: swapping the class swaps sensitivity and specificity
    recall = {name: c["recall"] for name, c in metrics[by_default]["per_class"].items()}
    assert metrics[by_default]["sensitivity"] == recall["pneumonia"] == metrics[by_name]["specificity"]
    assert metrics[by_default]["specificity"] == recall["normal"] == metrics[by_name]["sensitivity"]
    for run, index in ((by_default, 1), (by_name, 0)):
        assert json.loads((run / "data.json").read_text())["positive_class"] == {"index": index,
                                                                                "name": PNEUMONIA[index]}
        assert yaml.safe_load((run / "config.yaml").read_text())["eval"]["positive_class"] == index
        assert load_spec(run / "config.yaml").eval.positive_class == index  # the record re-runs as it is


def test_multi_class_runs_record_no_positive_class_and_refuse_one(tmp_path):
    run = _run(tmp_path / "runs", "digits")
    assert json.loads((run / "data.json").read_text())["positive_class"] is None
    assert "positive_class" not in json.loads((run / "metrics.json").read_text())
    assert yaml.safe_load((run / "config.yaml").read_text())["eval"]["positive_class"] is None
    load_spec(run / "config.yaml")  # re-reads: the default is not written as a value
    before = sorted((tmp_path / "runs").iterdir())
    with pytest.raises(ConfigError, match="eval.positive_class is 3, but it applies to binary tasks only"):
        _run(tmp_path / "runs", "digits", 3)
    assert sorted((tmp_path / "runs").iterdir()) == before  # refused before a run folder exists


# ---------------------------------------------------------------- from the command line

def test_cli_eval_prints_the_positive_class_by_name_and_index(cli, tmp_path, binary_npz):
    common = ("eval", "--model", "compact_cnn", "--data", f"medmnist:{binary_npz}", "--device", "cpu",
              "--out", str(tmp_path / "runs"))
    for given, line in ((None, "positive class: pneumonia (index 1)"), ("normal", "positive class: normal (index 0)"),
                        ("0", "positive class: normal (index 0)"), ("1", "positive class: pneumonia (index 1)")):
        result = cli(*common, *(("--positive-class", given) if given else ()))
        assert result.code == 0, result.err
        assert line in result.out.splitlines(), result.out
        run_dir = Path(result.out.strip().splitlines()[-1].removeprefix("run record: "))
        assert line in (run_dir / "summary.txt").read_text().splitlines()  # the run's written report too


def test_cli_simulate_and_run_take_the_option(cli, tmp_path, binary_npz):
    result = cli("simulate", "--model", "compact_cnn", "--data", f"medmnist:{binary_npz}", "--device", "cpu",
                 "--calibration-samples", "32", "--positive-class", "normal", "--out", str(tmp_path / "runs"))
    assert result.code == 0, result.err
    assert "positive class: normal (index 0)" in result.out
    assert "sens, spec, F1: of the positive class, normal (index 0)" in " ".join(result.out.split())
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "r", "device": "cpu", "data": {"source": f"medmnist:{binary_npz}"},
                                      "model": SMALL_MODEL, "output": {"root": str(tmp_path / "runs")}}))
    result = cli("run", str(config), "--positive-class", "0")
    assert result.code == 0, result.err
    assert "positive class: normal (index 0)" in result.out


@pytest.mark.parametrize("data, given, expected", [
    ("binary", "cat", "eval.positive_class is 'cat', which names no class of medmnist:"),
    ("binary", "2", "eval.positive_class is '2', which is not a class index"),
    ("digits", "1", "eval.positive_class is '1', but it applies to binary tasks only and digits has 10 classes"),
])
def test_cli_bad_positive_class_is_one_error_line(cli, tmp_path, binary_npz, data, given, expected):
    source = f"medmnist:{binary_npz}" if data == "binary" else data
    result = cli("eval", "--model", "compact_cnn", "--data", source, "--device", "cpu", "--positive-class", given,
                 "--out", str(tmp_path / "runs"))
    assert result.code == 2 and len(result.error_lines) == 1 and expected in result.error_lines[0], result.err
    assert ("0: normal, 1: pneumonia" if data == "binary" else "0: 0, 1: 1") in result.error_lines[0]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
