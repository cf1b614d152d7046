"""The clipped-block fraction of MX recipes, per layer, for weights and inputs."""

from __future__ import annotations

import torch
from torch import nn

from quantlens.metrics.mx_clipping import mx_clipping
from quantlens.nn import calibrate, quantize_model
from quantlens.nn.spec import LayerPlan, TensorSpec


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, 10)).eval()
    with torch.no_grad():  # Gaussian weights (torch's uniform init puts every block maximum where floor clips)
        for layer in (model[0], model[3]):
            layer.weight.normal_()
    return model


def _clipping(rule: str) -> dict:
    spec = TensorSpec("mxfp4", mode="block", mx_rule=rule)
    qmodel = quantize_model(_model(), {"0": LayerPlan(weights=spec, inputs=spec), "3": LayerPlan(weights=spec)})
    batches = [torch.randn(8, 64, 4, 4) for _ in range(2)]
    calibrate(qmodel, batches)
    return mx_clipping(qmodel, batches)


def test_the_spec_rule_clips_blocks_and_rounding_up_clips_none():
    floor, rceil = _clipping("floor"), _clipping("rceil")
    assert set(floor["layers"]) == {"0", "3"} and "input 0" in floor["layers"]["0"]
    assert 0.1 < floor["weights_mean"] < 0.5 and 0.1 < floor["inputs_mean"] < 0.5  # Gaussian-like blocks
    assert rceil["weights_mean"] == 0.0 and rceil["inputs_mean"] == 0.0


def test_nothing_is_reported_without_mx():
    qmodel = quantize_model(_model(), {"0": LayerPlan(weights=TensorSpec("int8", mode="channel"))})
    assert mx_clipping(qmodel, [torch.randn(2, 64, 4, 4)]) is None
