"""Command-line conveniences a new user reaches for: --version, -h, choices, natural order, shapes for bench."""

from __future__ import annotations

import pytest

from quantlens import __version__


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(cli, flag):
    result = cli(flag)
    assert result.code == 0 and result.out.strip() == f"quantlens {__version__}"


@pytest.mark.parametrize("args", [["-h"], ["eval", "-h"], ["bench", "-h"]])
def test_short_help(cli, args):
    result = cli(*args)
    assert result.code == 0 and "Usage" in result.out


@pytest.mark.parametrize(("args", "option"), [
    (["eval", "--model", "compact_cnn", "--data", "digits", "--split", "nope"], "--split"),
    (["train", "--model", "compact_cnn", "--data", "digits", "--optimizer", "lion"], "--optimizer"),
    (["bench", "--model", "compact_cnn", "--threads", "many"], "--threads"),
])
def test_enumerated_options_refuse_other_values(cli, args, option, tmp_path):
    result = cli(*args, "--out", tmp_path)
    assert result.code == 2 and not any(tmp_path.iterdir())
    assert len(result.error_lines) == 1 and option in result.error_lines[0], result.err


def test_formats_sort_naturally(cli):
    names = [line.split()[0] for line in cli("formats", "int*").out.splitlines()]
    plain = [n for n in names if n[3:].isdigit()]
    assert plain == sorted(plain, key=lambda n: int(n[3:])) and plain[:2] == ["int2", "int3"]
    assert plain.index("int10") > plain.index("int8")


def test_bench_with_a_checkpoint_takes_its_class_count(cli, tmp_path):
    import torch

    from quantlens.models.build import build_model

    weights = tmp_path / "w.pt"
    torch.save(build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32).state_dict(), weights)
    result = cli("bench", "--check", "--model", "resnet20_cifar", "--weights", weights, "--backends", "torch-fp32",
                 "--out", tmp_path / "runs")
    assert result.code == 0, result.err
    assert "synthetic data: 10 classes, 3x32x32" in result.err


@pytest.mark.parametrize(("args", "fragment"), [
    (["evl"], "No such command 'evl'. Did you mean 'eval'?"),
    (["eval"], "Missing option '--model'"),
    (["train", "--model", "compact_cnn", "--data", "digits", "--epochs", "2.5"], "'--epochs'"),
])
def test_usage_errors_are_one_line(cli, args, fragment):
    result = cli(*args)
    assert result.code == 2 and result.error_lines == [line for line in result.err.splitlines() if line.strip()]
    assert len(result.error_lines) == 1 and fragment in result.error_lines[0]
