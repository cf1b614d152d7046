"""AdaRound: learned rounding reconstructs every layer better than round-to-nearest, on the grid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens import events
from quantlens.errors import ConfigError
from quantlens.nn.convert import calibrate, quant_wrappers, quantize_model
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes import adaround, apply_pass
from quantlens.scaling import dequantize, quantize

LAYERS = ("0", "2", "5")
FAST = {"iterations": 150, "lr": 1e-2, "batch_size": 16, "max_samples": 64}


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()


def quantized(weights: TensorSpec, batches, inputs: TensorSpec | None = None) -> tuple[nn.Module, nn.Module]:
    model = small_net()
    qmodel = quantize_model(model, dict.fromkeys(LAYERS, LayerPlan(weights=weights, inputs=inputs)))
    if inputs is not None:
        calibrate(qmodel, batches)
    return model, qmodel


def batches_of(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16, 3, 8, 8, generator=g) for _ in range(n)]


def assert_on_grid_and_frozen(qmodel) -> None:
    for name, w in quant_wrappers(qmodel):
        quantizer, weight = w.param_quantizers["weight"], w.module.weight.detach()
        assert quantizer.frozen is not None, name
        view = quantizer.view(weight)
        q = quantize(view, quantizer.spec.format, quantizer.frozen)  # integer codes
        fmt = quantizer.spec.format
        assert torch.equal(q, q.round()) and q.min() >= fmt.qmin and q.max() <= fmt.qmax, name
        assert torch.equal(dequantize(q, fmt, quantizer.frozen), view), name  # exactly on the grid
        with torch.no_grad():
            assert torch.equal(quantizer(w.module.weight), w.module.weight), name  # the wrapper reproduces it


def test_every_layer_reconstructs_better_than_nearest_int4_per_channel():
    batches = batches_of()
    _, qmodel = quantized(TensorSpec("int4", "channel"), batches, inputs=TensorSpec("int8"))
    seen = []
    with events.listening(seen.append):
        result = adaround(qmodel, batches, keep_better=False, **FAST)
    assert [layer.name for layer in result.layers] == list(LAYERS) and not result.skipped
    for layer in result.layers:
        assert layer.used == "adaround" and layer.changed > 0 and layer.samples == 64
        assert layer.loss_adaround < layer.loss_nearest, layer
    assert_on_grid_and_frozen(qmodel)
    assert any(isinstance(e, events.TaskStarted) and e.description == "AdaRound" for e in seen)


def test_asymmetric_per_tensor_weights_land_on_their_grid_and_outputs_improve():
    batches = batches_of(2)
    model, qmodel = quantized(TensorSpec("int4_asym", "tensor"), batches)
    x = torch.cat(batches)
    with torch.no_grad():
        before = float((qmodel(x) - model(x)).pow(2).mean())
    outcome = apply_pass("adaround", qmodel, calibration=batches, **FAST)
    assert_on_grid_and_frozen(qmodel)
    assert all(layer["loss_adaround"] <= layer["loss_nearest"] for layer in outcome.report["layers"])
    with torch.no_grad():
        assert float((qmodel(x) - model(x)).pow(2).mean()) < before


def test_same_seed_same_rounding():
    batches = batches_of(2)
    weights = []
    for _ in range(2):
        _, qmodel = quantized(TensorSpec("int4", "channel"), batches)
        adaround(qmodel, batches, seed=3, **{**FAST, "iterations": 30})
        weights.append(torch.cat([w.module.weight.flatten() for _, w in quant_wrappers(qmodel)]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("fmt, mode, words", [("fp8_e4m3", "channel", "fp8_e4m3 is a float format"),
                                              ("mxfp4", "block", "mxfp4 is a block format")])
def test_non_integer_weight_formats_are_refused(fmt, mode, words):
    batches = batches_of(1)
    _, qmodel = quantized(TensorSpec(fmt, mode), batches)
    with pytest.raises(ConfigError, match=f"AdaRound learns integer rounding; {words}"):
        adaround(qmodel, batches)


def test_unknown_option_is_refused():
    batches = batches_of(1)
    _, qmodel = quantized(TensorSpec("int4", "channel"), batches)
    with pytest.raises(ConfigError, match="unknown option.*iteration"):
        apply_pass("adaround", qmodel, calibration=batches, iteration=10)
