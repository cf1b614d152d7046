"""Layer-wise error, compression statistics and paired significance, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.metrics import Predictions
from quantlens.metrics.compression import compression_stats
from quantlens.metrics.layerwise import layerwise_errors, layerwise_table
from quantlens.metrics.paired import paired_comparison
from quantlens.nn import LayerPlan, TensorSpec, calibrate, quantize_model
from quantlens.recipes import QuantizationConfig, plan_layers


def test_layerwise_identical_models_are_perfect():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    errors = layerwise_errors(model, model, {"0": "Linear", "2": "Linear"}, [torch.randn(8, 4)])
    assert all(e.mse == 0 and e.sqnr_db == math.inf and e.cosine == pytest.approx(1.0) for e in errors)


def test_layerwise_ranks_worst_first_and_sqnr_matches_definition():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4)).eval()
    plans = {"0": LayerPlan(weights=TensorSpec("int8", "channel")),
             "1": LayerPlan(weights=TensorSpec("int2", "tensor"))}
    q = quantize_model(model, plans)
    x = torch.randn(32, 16)
    errors = layerwise_errors(model, q, {"0": "Linear", "1": "Linear"}, [x])
    assert [e.layer for e in errors] == ["1", "0"]
    with torch.inference_mode():
        ref, test = model(x).double(), q(x).double()
    expected = 10 * math.log10(float(ref.square().sum()) / float((test - ref).square().sum()))
    assert errors[0].sqnr_db == pytest.approx(expected, rel=1e-9)
    assert "SQNR dB" in layerwise_table(errors)


def test_compression_bits_by_hand():
    model = nn.Sequential(nn.Linear(64, 10, bias=True))
    q = quantize_model(model, plan_layers(model, QuantizationConfig(format="int8", inputs={"mode": "none"})).layers)
    stats = compression_stats(q)
    # 640 weights x 8 bits + 10 FP32 per-channel scales; 10 float biases
    assert stats["bits_per_quantized_weight"] == pytest.approx((640 * 8 + 10 * 32) / 640)
    assert stats["model_bytes"] == pytest.approx((640 * 8 + 10 * 32 + 10 * 32) / 8)
    assert stats["fp32_bytes"] == 650 * 4


def test_compression_mx_and_nvfp4_overheads():
    model = nn.Sequential(nn.Linear(64, 8, bias=False))
    for fmt, expected in (("mxfp4", 4 + 8 / 32), ("nvfp4", 4 + 8 / 16 + 32 / 512)):
        q = quantize_model(model, plan_layers(model, QuantizationConfig(format=fmt, inputs={"mode": "none"})).layers)
        assert compression_stats(q)["bits_per_quantized_weight"] == pytest.approx(expected)


def _preds(correct: list[bool]) -> Predictions:
    labels = np.zeros(len(correct), dtype=np.int64)
    probs = np.array([[0.9, 0.1] if c else [0.1, 0.9] for c in correct], dtype=np.float32)
    return Predictions(np.arange(len(correct)), labels, probs, np.array([str(i) for i in range(len(correct))]))


def test_paired_mcnemar_by_hand():
    # 100 samples; float right & quantized wrong on 10, the reverse on 2: binomial(2 of 12, 0.5) two-sided
    ref = [True] * 88 + [True] * 10 + [False] * 2
    cand = [True] * 88 + [False] * 10 + [True] * 2
    result = paired_comparison(_preds(ref), _preds(cand))
    expected_p = 2 * sum(math.comb(12, k) for k in range(0, 3)) / 2 ** 12
    assert result["mcnemar_p"] == pytest.approx(expected_p)
    assert result["top1_delta"] == pytest.approx(-0.08)
    low, high = result["top1_delta_ci"]
    assert low < -0.08 < high < 0 and result["significant"]
    assert result["float_only_correct"] == 10 and result["quantized_only_correct"] == 2


def test_paired_identical_predictions():
    result = paired_comparison(_preds([True, False] * 5), _preds([True, False] * 5))
    assert result["mcnemar_p"] == 1.0
    # no disagreement still leaves uncertainty: Newcombe's interval at n = 10, 5 right on both sides
    low, high = result["top1_delta_ci"]
    assert low == pytest.approx(-0.166593, abs=1e-6) and high == pytest.approx(0.166593, abs=1e-6)
    assert result["prediction_agreement"] == 1.0


def test_calibrate_needs_a_batch():
    from quantlens.errors import ModelError

    q = quantize_model(nn.Sequential(nn.Linear(2, 2)), {"0": LayerPlan(inputs=TensorSpec("int8"))})
    with pytest.raises(ModelError, match="at least one batch"):
        calibrate(q, [])
