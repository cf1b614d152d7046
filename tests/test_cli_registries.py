"""`quantlens observers` and `quantlens passes` list what a recipe can name."""

from __future__ import annotations


def test_observers_lists_every_registered_observer_and_dynamic(cli):
    result = cli("observers")
    names = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    assert result.code == 0
    assert {"max", "moving_average", "percentile", "entropy", "mse", "dynamic"} <= set(names)


def test_passes_lists_each_pass_with_the_model_it_runs_on(cli):
    result = cli("passes")
    rows = {line.split()[0]: line.split()[1] for line in result.out.splitlines() if line.strip()}
    assert rows == {"adaround": "quantized", "bias_correction": "quantized", "cle": "float", "fold_bn": "float"}
