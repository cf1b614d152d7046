"""Simulated formats inside an experiment: paired with FP32, calibration never evaluated, records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict
from quantlens.metrics import Predictions

SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = spec_from_dict({
        "name": "sim", "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(root)},
        "train": {"enabled": True, "epochs": 2},
        "analysis": {"layerwise_samples": 64, "compliance_samples": 16},
        "quantization": [{"format": "int8", "calibration_samples": 64}, {"format": "mxfp4"},
                         {"format": "fp8_e4m3", "inputs": {"observer": "dynamic"}, "norm": {"mode": "tensor"}}]})
    return run_experiment(spec)


def test_every_format_is_recorded_and_paired(simulated):
    run = simulated.run_dir
    rows = [row.to_dict() for row in simulated.simulation.formats]
    assert [r["label"] for r in rows] == ["w:int8/channel in:int8/tensor", "w:mxfp4/block32 in:mxfp4/block32",
                                          "w:fp8_e4m3/channel in:fp8_e4m3/tensor bn:fp8_e4m3/tensor"]
    fp32 = Predictions.load(run / "predictions.npz")
    for row in rows:
        folder = run / "quantization" / row["folder"]
        for name in ("metrics.json", "predictions.npz", "compliance.json", "layerwise.json", "layerwise.txt",
                     "size.json", "coverage.json", "config.json"):
            assert (folder / name).is_file(), name
        sim = Predictions.load(folder / "predictions.npz")
        assert np.array_equal(sim.indices, fp32.indices)
        assert row["compliant"] is True and row["quantized_layers"] > 0
        low, high = row["top1_delta_ci"]
        assert low <= row["top1_delta"] <= high
    summary = json.loads((run / "quantization" / "summary.json").read_text())
    assert summary["fp32"]["top1"] == simulated.evaluation.metrics.top1 and len(summary["formats"]) == 3


def test_calibration_comes_from_training_data_not_evaluation(simulated):
    data = json.loads((simulated.run_dir / "data.json").read_text())
    calib = set(data["calibration"]["indices"])
    assert data["calibration"]["origin"] == "this run's training split"
    evaluated = set(Predictions.load(simulated.run_dir / "predictions.npz").indices.tolist())
    assert calib and not calib & evaluated


def test_calibration_is_held_out_of_evaluation_without_a_train_split(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
                           "analysis": {"layerwise_samples": 0, "compliance_samples": 0},
                           "quantization": [{"format": "int8", "calibration_samples": 100}]})
    outcome = run_experiment(spec)
    data = json.loads((outcome.run_dir / "data.json").read_text())
    assert outcome.evaluation.split == "all" and outcome.evaluation.metrics.n == 1797 - 100
    assert data["calibration"]["n"] == 100 and "held out" in data["calibration"]["origin"]


def test_bn_statistics_and_coverage_recorded(simulated):
    folder = simulated.run_dir / "quantization" / simulated.simulation.formats[2].folder
    compliance = json.loads((folder / "compliance.json").read_text())
    tensors = {(t["layer"], t["tensor"]) for t in compliance["tensors"]}
    assert {("features.0.1", name) for name in ("weight", "bias", "running_mean", "running_var")} <= tensors
    coverage = json.loads((folder / "coverage.json").read_text())
    assert coverage["unsupported_modules"] == [] and coverage["quantized_layers"] == len(coverage["layers"])


def test_simulate_command_runs_block_formats_with_their_defaults(cli, tmp_path):
    # The recipe's defaults, as `quantlens simulate` gives them: mxfp4 and nvfp4 bring their block mode.
    # --split test only keeps the run short (a few hundred samples instead of all 1,797).
    result = cli("simulate", "--model", "compact_cnn", "--data", "digits", "--format", "int8,fp8_e4m3,mxfp4,nvfp4",
                 "--split", "test", "--out", tmp_path)
    assert result.code == 0, result.err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "cv_splits"]
    summary = json.loads((run / "quantization" / "summary.json").read_text())
    assert [row["label"] for row in summary["formats"]] == [
        "w:int8/channel in:int8/tensor", "w:fp8_e4m3/channel in:fp8_e4m3/tensor", "w:mxfp4/block32 in:mxfp4/block32",
        "w:nvfp4/block16 in:nvfp4/block16"]
    assert all(row["compliant"] for row in summary["formats"])


@pytest.mark.parametrize(("options", "labels"), [
    ([], ["w:mxfp4/block32 in:mxfp4/block32", "w:int8/channel in:int8/tensor"]),
    (["--weight-format", "int4"], ["w:int4/channel in:mxfp4/block32", "w:int4/channel in:int8/tensor"]),
    (["--input-mode", "none"], ["w:mxfp4/block32", "w:int8/channel"]),
    (["--weight-mode", "none", "--output-mode", "block", "--norm-mode", "channel", "--norm-format", "int8"],
     ["in:mxfp4/block32 out:mxfp4/block32 bn:int8/channel", "in:int8/tensor out:int8/block32 bn:int8/channel"]),
    (["--act-mode", "block", "--input-chunk-size", "16", "--input-format", "fp4_e2m1", "--no-first-layer"],
     ["w:mxfp4/block32 in:fp4_e2m1/tensor out:mxfp4/block32", "w:int8/channel in:fp4_e2m1/tensor out:int8/block32"]),
])
def test_simulate_options_change_only_what_they_name(cli, monkeypatch, options, labels):
    import quantlens.cli

    seen = []
    monkeypatch.setattr(quantlens.cli, "_run", lambda spec, check=False: seen.append(spec))
    result = cli("simulate", "--model", "compact_cnn", "--data", "digits", "--format", "mxfp4,int8", *options)
    assert result.code == 0, result.err
    assert [q.label for q in seen[0].quantization] == labels


def test_simulate_shared_options_reach_every_role(cli, monkeypatch):
    import quantlens.cli

    seen = []
    monkeypatch.setattr(quantlens.cli, "_run", lambda spec, check=False: seen.append(spec))
    cli("simulate", "--model", "compact_cnn", "--data", "digits", "--scale", "pow2", "--rounding", "stochastic",
        "--observer", "dynamic", "--calibration-samples", "64", "--input-ops", "matmul")
    (entry,) = seen[0].quantization
    assert {r.scale for r in entry.recipes().values()} == {"pow2"}
    assert {r.rounding for r in entry.recipes().values()} == {"stochastic"}
    assert (entry.inputs.observer, entry.outputs.observer, entry.weights.observer) == ("dynamic", "dynamic", "max")
    assert entry.calibration_samples == 64 and entry.input_ops == "matmul"


@pytest.mark.parametrize(("options", "message"), [
    (["--weight-mode", "channel"], "quantization.0.weights: mxfp4 is a block format"),
    (["--input-mode", "rows"], "--input-mode"),  # refused by the option's choices, before any config is built
    (["--observer", "entropi"], "quantization.0.inputs.observer: unknown observer 'entropi'; did you mean entropy"),
    (["--passes", "fold_bn,adarund"], "quantization.0.passes.1.name: unknown pass 'adarund'; did you mean adaround"),
    (["--scale", "fp16"], "--scale"),
    (["--input-ops", "gemm"], "--input-ops"),
    (["--norm-mode", "block"], "--norm-mode"),
])
def test_simulate_refuses_bad_options(cli, tmp_path, options, message):
    result = cli("simulate", "--check", "--model", "compact_cnn", "--data", "digits", "--format", "mxfp4",
                 *options, "--out", tmp_path)
    assert result.code == 2 and message in result.err, result.err
