"""Recipes deployed with quantlens's own scales inside an experiment, and `quantlens export`."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict
from quantlens.metrics import Predictions
from quantlens.models.build import build_model

SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}
INT8 = {"version": 2, "format": "int8", "weights": {"mode": "channel"}, "calibration_samples": 64,
        "inputs": {"format": "int8_asym", "observer": "max"}, "passes": ["fold_bn"]}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = spec_from_dict({
        "name": "deploy", "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(root)},
        "train": {"enabled": True, "epochs": 2}, "analysis": {"layerwise_samples": 0, "compliance_samples": 64},
        "quantization": [{**INT8, "weights": {"format": "int7", "mode": "channel"},
                          "deploy": ["onnxruntime", "openvino", "pytorch"]}]})
    return run_experiment(spec)


def test_each_runtime_is_evaluated_on_every_evaluation_sample_and_paired(deployed):
    row = deployed.simulation.formats[0]
    folder = deployed.run_dir / "quantization" / row.folder
    fp32 = Predictions.load(deployed.run_dir / "predictions.npz")
    assert [d["runtime"] for d in row.deployed] == ["onnxruntime", "openvino", "pytorch"]
    for d in row.deployed:
        predictions = Predictions.load(folder / f"deployed-{d['runtime']}.npz")
        assert (predictions.indices == fp32.indices).all()  # the same samples, in the same order
        assert d["top1"] == pytest.approx(predictions.correct.mean())
        low, high = d["vs_simulated_ci"]
        assert low <= d["vs_simulated_delta"] <= high and d["agreement_with_simulated"] >= 0.95
        assert d["latency_ms"] > 0 and d["latency_batch"] > 0
    ort, ov, pt = row.deployed  # each runtime against the simulation of its own arithmetic: bit for bit here
    assert ort["agreement_with_faithful"] == 1.0 and ov["agreement_with_faithful"] == 1.0
    assert ov["faithful_of"] == "OpenVINO's INT8 CPU kernels" and pt["agreement_with_faithful"] is None
    pt2e = json.loads((folder / "pt2e.json").read_text())  # PyTorch x86: torchao pt2e, inductor's INT8 kernels
    assert pt2e["int8_kernels"] and row.deployed[2]["size_bytes"] == (folder / "model.pt2e-int8.pt2").stat().st_size
    export = json.loads((folder / "export.json").read_text())
    model_file = folder / "model.qdq.onnx"
    assert export["size_bytes"] == model_file.stat().st_size and len(export["sha256"]) == 64
    assert any(init.data_type == onnx.TensorProto.INT8 for init in onnx.load(model_file).graph.initializer)
    agreement = json.loads((folder / "agreement.json").read_text())
    assert agreement["samples"] >= 64 and agreement["ort_fusion"]["integer_layers"]


def test_fp32_runs_on_the_same_runtimes_as_the_latency_reference(deployed):
    baseline = deployed.simulation.fp32_deployed
    fp32 = Predictions.load(deployed.run_dir / "predictions.npz")
    assert [d["runtime"] for d in baseline] == ["onnxruntime", "openvino", "pytorch"]
    for d in baseline:
        assert d["top1"] == pytest.approx(fp32.correct.mean(), abs=0.01)  # the float graph, exported
        assert d["agreement_with_pytorch"] >= 0.99 and d["latency_ms"] > 0 and d["latency_batch"] > 0
        assert d["runtime"] == "pytorch" or (d["size_bytes"] > 0 and len(d["sha256"]) == 64)
    assert (deployed.run_dir / "quantization" / "fp32-deployed" / "deployed.json").is_file()


def test_a_format_no_runtime_executes_is_refused_before_any_work(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
                           "quantization": [{"format": "fp4_e2m1", "deploy": ["onnxruntime"]}]})
    with pytest.raises(Exception, match=r"quantization\.0\.deploy .*fp4_e2m1 is simulation only on ONNX Runtime"):
        run_experiment(spec)
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8, options={})
    path = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), path)
    return path


def _export_args(checkpoint, *extra):
    return ("export", checkpoint.with_name("cnn.onnx"), "--model", "compact_cnn", "--data", "digits",
            "--weights", checkpoint, "--calibration-samples", "64", *extra)


def test_export_writes_the_file_and_says_what_runs_in_integer(cli, checkpoint, monkeypatch):
    monkeypatch.chdir(checkpoint.parent)
    result = cli(*_export_args(checkpoint, "--observer", "percentile", "--passes", "fold_bn,bias_correction"))
    assert result.code == 0, result.err
    target = checkpoint.with_name("cnn.onnx")
    assert f"wrote {target}" in result.out and "layers in integer kernels" in result.out
    details = json.loads(target.with_suffix(".json").read_text())
    assert details["export"]["size_bytes"] == target.stat().st_size
    assert [p["pass"] for p in details["passes"]] == ["fold_bn", "bias_correction"]


@pytest.mark.parametrize(("extra", "message"), [
    (("--weight-format", "fp8_e4m3"), "fp8_e4m3 is simulation only on ONNX Runtime CPU"),
    (("--observer", "entrpy"), "unknown observer 'entrpy'; did you mean entropy"),
    (("--passes", "fold_bn,adarond"), "unknown pass 'adarond'; did you mean adaround"),
    (("--calibration-samples", "0"), "calibration_samples: Input should be greater than 0"),
])
def test_export_refuses_bad_input_in_one_line_and_writes_nothing(cli, checkpoint, monkeypatch, extra, message):
    monkeypatch.chdir(checkpoint.parent)
    result = cli(*_export_args(checkpoint, *extra))
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not checkpoint.with_name("cnn.onnx").exists()


def test_a_calibration_set_smaller_than_one_batch_is_refused_before_the_run_folder_exists(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
                           "quantization": [{"format": "int8", "calibration_samples": 40,
                                             "calibration_batch_size": 64}]})
    with pytest.raises(Exception, match=r"quantization\.0: the calibration set holds 40 samples, fewer than one "
                                        r"batch \(calibration_batch_size 64\)"):
        run_experiment(spec)
    assert not any(tmp_path.iterdir())


def test_adaround_on_float_weights_is_refused_with_the_config():
    with pytest.raises(Exception, match="adaround learns the rounding of integer weights; weights.format fp8_e4m3 "
                                        "is not an integer format"):
        spec_from_dict({"quantization": [{"format": "fp8_e4m3", "passes": ["adaround"]}]})


def test_the_recipe_chosen_on_the_selection_split_is_deployed(tmp_path):
    spec = spec_from_dict({
        "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
        "train": {"enabled": True, "epochs": 1}, "analysis": {"layerwise_samples": 0, "compliance_samples": 0},
        "selection": {"calibration_per_class": 4, "selection_per_class": 8, "deploy": ["onnxruntime"]},
        "quantization": [{**INT8, "calibration_samples": 40, "name": "a"},
                         {**INT8, "calibration_samples": 40, "name": "b", "passes": ["fold_bn", "bias_correction"]}]})
    summary = run_experiment(spec).simulation
    chosen = summary.chosen
    assert [d["runtime"] for d in chosen.deployed] == ["onnxruntime"]
    assert all(row.deployed is None for row in summary.formats if row.label != chosen.label)
    assert chosen.deployed[0]["agreement_with_faithful"] >= 0.95


def test_selection_deploy_refuses_a_candidate_no_runtime_executes(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
                           "selection": {"calibration_per_class": 4, "selection_per_class": 8,
                                         "deploy": ["onnxruntime"]},
                           "quantization": [INT8, {"format": "fp8_e4m3"}]})
    with pytest.raises(Exception, match=r"selection\.deploy \(quantization\.1\) .*fp8_e4m3 is simulation only"):
        run_experiment(spec)


def test_deployment_simulation_predicts_onnx_runtime(tmp_path):
    spec = spec_from_dict({
        "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(tmp_path)},
        "train": {"enabled": True, "epochs": 1}, "analysis": {"layerwise_samples": 0, "compliance_samples": 0},
        "quantization": [{**INT8, "simulation": "deployment", "deploy": ["onnxruntime"]}]})
    row = run_experiment(spec).simulation.formats[0]
    (deployed,) = row.deployed
    # the simulation the entry reports is the deployment-faithful one: it predicts the runtime exactly
    assert deployed["agreement_with_simulated"] == deployed["agreement_with_faithful"] == 1.0
    assert deployed["vs_simulated_delta"] == 0.0


VIT = {"name": "vit_tiny", "options": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 4}}
DYNAMIC = {"version": 2, "format": "int8", "weights": {"mode": "channel"}, "input_ops": "matmul",
           "overrides": [{"type": "Conv2d", "skip": True}, {"type": "MatMul", "skip": True}]}
ORT_DYNAMIC = {**DYNAMIC, "name": "dynamic ort", "inputs": {"format": "uint8", "observer": "dynamic"},
               "simulation": "deployment", "deploy": ["onnxruntime"]}
TORCH_DYNAMIC = {**DYNAMIC, "name": "dynamic torch", "deploy": ["pytorch"],
                 "inputs": {"format": "int8_asym", "mode": "block", "block_size": 128, "observer": "dynamic"}}


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory):
    pytest.importorskip("torchao")
    spec = spec_from_dict({
        "name": "dynamic", "data": {"source": "digits", "image_size": 8}, "model": VIT,
        "output": {"root": str(tmp_path_factory.mktemp("runs"))},
        "train": {"enabled": True, "epochs": 2, "optimizer": "adamw", "lr": 0.001},
        "analysis": {"layerwise_samples": 0, "compliance_samples": 64},
        "quantization": [ORT_DYNAMIC, TORCH_DYNAMIC]})
    return run_experiment(spec)


def test_dynamic_int8_recipes_deploy_on_onnxruntime_and_pytorch(dynamic_run):
    ort_row, torch_row = dynamic_run.simulation.formats
    (ort,), (pt,) = ort_row.deployed, torch_row.deployed
    assert (ort["runtime"], ort["artefact"]) == ("onnxruntime", "ONNX dynamic INT8")
    assert (pt["runtime"], pt["artefact"], pt["size_bytes"]) == ("pytorch", "torchao dynamic INT8", None)
    for d in (ort, pt):  # the simulation of each runtime's arithmetic predicts it
        assert d["agreement_with_faithful"] >= 0.99 and d["agreement_with_simulated"] >= 0.97
    model_file = dynamic_run.run_dir / "quantization" / ort_row.folder / "model.dynamic-int8.onnx"
    assert ort["size_bytes"] == model_file.stat().st_size
    baseline = {d["runtime"] for d in dynamic_run.simulation.fp32_deployed}
    assert baseline == {"onnxruntime", "pytorch"}


def test_a_dynamic_recipe_is_refused_on_openvino_before_any_work(tmp_path):
    spec = spec_from_dict({"data": {"source": "digits", "image_size": 8}, "model": VIT,
                           "output": {"root": str(tmp_path)},
                           "quantization": [{**ORT_DYNAMIC, "deploy": ["openvino"]}]})
    with pytest.raises(Exception, match=r"quantization\.0\.deploy .*dynamic activation ranges deploy on onnxruntime "
                                        r"and pytorch, not openvino"):
        run_experiment(spec)
    assert not any(tmp_path.iterdir())
