"""Empirical bias correction: each layer's mean output error per channel goes to zero."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens.errors import ConfigError, ModelError
from quantlens.nn.convert import calibrate, quant_wrappers, quantize_model
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes import apply_pass, correct_bias
from quantlens.passes.bias_correction import channel_mean, layer_output
from quantlens.passes.graph import quantized_input

LAYERS = ("0", "2", "5")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()


def quantized(model: nn.Module, batches) -> nn.Module:
    plan = LayerPlan(weights=TensorSpec("int4", "tensor"), inputs=TensorSpec("int8"))
    qmodel = quantize_model(model, dict.fromkeys(LAYERS, plan))
    calibrate(qmodel, batches)
    return qmodel


def mean_output_errors(qmodel, float_model, batches) -> dict[str, torch.Tensor]:
    """Per layer: E[float layer(x_q) - quantized layer(x_q)] per channel, x_q the quantized layer's input."""
    sums: dict[str, list] = {}
    hooks = []
    for name, w in quant_wrappers(qmodel):
        def hook(module, args, name=name):
            x = quantized_input(module, args[0])
            ref = float_model.get_submodule(name)(x)
            out = layer_output(module.module, x, module.param_quantizers["weight"](module.module.weight),
                               module.module.bias)
            s, n = channel_mean(ref - out, module.module)
            total = sums.setdefault(name, [0, 0])
            total[0], total[1] = total[0] + s, total[1] + n
        hooks.append(w.register_forward_pre_hook(hook))
    with torch.no_grad():
        for x in batches:
            qmodel(x)
    for h in hooks:
        h.remove()
    return {name: s / n for name, (s, n) in sums.items()}


def logit_mse(qmodel, model, batches) -> float:
    # batch by batch: small tensors stay on the eager kernels (no compile in a unit test)
    with torch.no_grad():
        return sum(float((qmodel(x) - model(x)).pow(2).mean()) for x in batches) / len(batches)


def test_mean_error_per_channel_vanishes_and_logits_get_closer():
    model = small_net()
    batches = [torch.randn(16, 3, 8, 8) + 0.5 for _ in range(4)]
    qmodel = quantized(model, batches)
    mse_before = logit_mse(qmodel, model, batches)
    errors_before = mean_output_errors(qmodel, model, batches)
    result = correct_bias(qmodel, model, batches)
    assert result.model is qmodel and sorted(result.corrected) == sorted(LAYERS) and not result.skipped
    errors_after = mean_output_errors(qmodel, model, batches)
    for name in LAYERS:
        scale = float(errors_before[name].abs().max())
        assert scale > 1e-3, name  # INT4 per-tensor weights do shift the means
        assert float(errors_after[name].abs().max()) < 1e-4 * scale, name  # zero up to float rounding
    assert logit_mse(qmodel, model, batches) < 0.7 * mse_before
    assert qmodel.get_submodule("0").module.bias is not None  # created for the bias-free conv
    assert model[0].bias is None  # the float model is untouched


def test_running_twice_gives_the_same_biases():
    model = small_net()
    batches = [torch.randn(8, 3, 8, 8) for _ in range(2)]
    qmodel = quantized(model, batches)
    correct_bias(qmodel, model, batches)
    first = {n: w.module.bias.clone() for n, w in quant_wrappers(qmodel)}
    correct_bias(qmodel, model, batches)
    for name, w in quant_wrappers(qmodel):
        torch.testing.assert_close(w.module.bias, first[name], rtol=1e-5, atol=1e-6)


def test_registered_pass_checks_its_stage_and_context():
    model = small_net()
    batches = [torch.randn(8, 3, 8, 8)]
    with pytest.raises(ModelError, match="quantized"):
        apply_pass("bias_correction", model, float_model=model, calibration=batches)
    qmodel = quantized(model, batches)
    with pytest.raises(ConfigError, match="float_model"):
        apply_pass("bias_correction", qmodel, calibration=batches)
    outcome = apply_pass("bias_correction", qmodel, float_model=model,
                         calibration=lambda: iter([(b, torch.zeros(len(b))) for b in batches]))
    assert outcome.model is qmodel and outcome.report["samples"] == 8
