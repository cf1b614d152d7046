"""Peers: other tools' own INT8 PTQ on the same model, calibration and evaluation samples as quantlens."""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings

import numpy as np
import pytest
from rich.console import Console

from quantlens import events
from quantlens.experiments import peers as peer_module
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.simulation import calibration_choice
from quantlens.experiments.spec import spec_from_dict
from quantlens.experiments.stages import STAGES, load_result
from quantlens.metrics import Predictions
from quantlens.report.peer_tables import peer_table

# one conv per stage: ONNX Runtime's Entropy search (pure Python, ~1 s per tensor at 2048 bins) stays short
SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16], "convs_per_stage": 1}}
PEERS = ["ort_minmax", "ort_entropy", "torch_x86", "nncf"]


def _spec(root, peers, **extra):
    return spec_from_dict({"name": "peers", "data": {"source": "digits"}, "model": SMALL_MODEL,
                           "output": {"root": str(root)}, "analysis": {"layerwise_samples": 0, "compliance_samples": 0},
                           "peers": peers, **extra})


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=220, record=True)
    console.print(table)
    return console.export_text()


@pytest.fixture(scope="module")
def peered(tmp_path_factory):
    spec = _spec(tmp_path_factory.mktemp("runs"), PEERS, train={"enabled": True, "epochs": 2},
                 quantization=[{"format": "int8", "calibration_samples": 64}])
    notes = []
    with warnings.catch_warnings(record=True) as caught, events.listening(notes.append):
        warnings.simplefilter("always")
        outcome = run_experiment(spec)
    return outcome, caught, notes


def test_every_peer_is_paired_with_fp32_on_the_same_samples(peered):
    outcome, _, _ = peered
    summary = outcome.results["peers"]
    fp32 = Predictions.load(outcome.run_dir / "predictions.npz")
    assert [row.name for row in summary.peers] == PEERS
    for row in summary.peers:
        assert row.status == "ok", row.status
        assert math.isfinite(row.top1) and row.n == len(fp32.indices) == summary.fp32["n"]
        low, high = row.top1_delta_ci
        assert low <= row.top1_delta <= high and 0 <= row.mcnemar_p <= 1
        assert row.deltas["top1"]["n"] == row.n and row.calibration_samples == 64
        folder = outcome.run_dir / row.folder
        for name in ("predictions.npz", "metrics.json", "settings.json"):
            assert (folder / name).is_file(), (row.name, name)
        assert np.array_equal(Predictions.load(folder / "predictions.npz").indices, fp32.indices)
        assert row.model_bytes == sum(f["bytes"] for f in row.files) > 0
        for record in row.files:
            data = (outcome.run_dir / record["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["sha256"]
    reread = load_result(STAGES.get("peers"), outcome.run_dir)
    assert reread == summary


def test_peers_calibrate_on_the_first_recipes_samples(peered):
    outcome, _, _ = peered
    data = json.loads((outcome.run_dir / "data.json").read_text())
    calibration = outcome.results["peers"].calibration
    expected = calibration_choice(np.asarray(data["calibration"]["indices"]), _first_entry())
    assert calibration["indices"] == [int(i) for i in expected]
    assert calibration["n"] == 64 and "quantization.0" in calibration["source"]


def _first_entry():
    return spec_from_dict({"data": {"source": "digits"}, "model": SMALL_MODEL,
                           "quantization": [{"format": "int8", "calibration_samples": 64}]}).quantization[0]


def _activation_scales(path) -> dict[str, float]:
    import onnx
    from onnx import numpy_helper

    # per-tensor (scalar) scales are the activations'; weights' and biases' are per-channel vectors
    return {t.name: float(numpy_helper.to_array(t)) for t in onnx.load(str(path)).graph.initializer
            if t.name.endswith("_scale") and not t.dims}


def test_ort_entropy_used_2048_bins_and_its_ranges_are_not_minmax(peered):
    outcome, _, _ = peered
    rows = {row.name: row for row in outcome.results["peers"].peers}
    entropy, minmax = rows["ort_entropy"].settings, rows["ort_minmax"].settings
    assert entropy["calibration_method"] == "Entropy" and minmax["calibration_method"] == "MinMax"
    assert entropy["calibrator_held"]["num_bins"] == 2048 and entropy["calibrator_held"]["num_quantized_bins"] == 128
    assert entropy["reduce_range"] == minmax["reduce_range"] and entropy["per_channel"] is True
    ranges = {name: json.loads((outcome.run_dir / "peers" / name / "ranges.json").read_text())
              for name in ("ort_entropy", "ort_minmax")}
    assert ranges["ort_entropy"].keys() == ranges["ort_minmax"].keys()
    assert any(ranges["ort_entropy"][k] != ranges["ort_minmax"][k] for k in ranges["ort_minmax"])
    # ... and the quantized files say so too: some activation scale differs.
    scales = {name: _activation_scales(outcome.run_dir / "peers" / name / "model.onnx")
              for name in ("ort_entropy", "ort_minmax")}
    common = scales["ort_entropy"].keys() & scales["ort_minmax"].keys()
    assert common and any(not math.isclose(scales["ort_entropy"][k], scales["ort_minmax"][k]) for k in common)


def test_torch_ao_deprecation_kept_out_and_progress_is_events(peered):
    _, caught, notes = peered
    assert not [w for w in caught if "torch.ao" in str(w.message) or "/ao/quantization/" in w.filename]
    assert any(isinstance(n, events.Note) and n.text.startswith("peer nncf: top1") for n in notes)


def test_peer_table_lists_fp32_and_every_peer(peered):
    outcome, _, _ = peered
    text = _render(peer_table(outcome.results["peers"]))
    for name in ("FP32", *PEERS, "2048 bins"):
        assert name in text


def test_a_failing_peer_is_recorded_and_the_rest_run(tmp_path, monkeypatch):
    def broken(job):
        raise RuntimeError("exporter exploded\nsecond line")

    monkeypatch.setitem(peer_module.PEERS, "ort_minmax", broken)
    spec = _spec(tmp_path, ["ort_minmax", "torch_x86"], quantization=[{"format": "int8", "calibration_samples": 32}])
    notes = []
    with events.listening(notes.append):
        outcome = run_experiment(spec)
    failed, ran = outcome.results["peers"].peers
    assert failed.status == "not run: RuntimeError: exporter exploded" and failed.top1 is None
    assert ran.status == "ok" and ran.n == outcome.evaluation.metrics.n and ran.calibration_samples == 32
    assert any(n.level == "warning" and "ort_minmax not run" in n.text for n in notes if isinstance(n, events.Note))
    assert "not run: RuntimeError" in _render(peer_table(outcome.results["peers"]))


def test_peers_without_a_recipe_to_stand_beside_are_refused():
    with pytest.raises(Exception, match="peers: are calibrated on the samples quantlens's recipes calibrate on"):
        spec_from_dict({"peers": ["torch_x86"]})


def test_ort_histogram_calibrators_take_a_short_last_batch(tmp_path):
    # 10 samples in batches of 4, 4, 2: ONNX Runtime's Entropy calibrator stacks per-batch outputs with
    # numpy and failed on the short batch ("inhomogeneous shape"); the peer re-cuts them equally
    import torch
    from torch import nn

    from quantlens.backends.onnx_export import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    batches = list(torch.randn(10, 1, 8, 8).split(4))
    assert [len(b) for b in peer_module.equal_batches(batches)] == [2] * 5
    export = export_onnx(model, batches[0], tmp_path, backend="test")
    bounds, held = peer_module.ort_quantize(export.path, tmp_path / "q.onnx", batches, "Entropy",
                                            {"num_bins": 128, "num_quantized_bins": 32}, reduce_range=False)
    assert (tmp_path / "q.onnx").is_file() and bounds and held
