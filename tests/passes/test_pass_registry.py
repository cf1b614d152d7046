"""Passes by name: stages, options and context checked; a recipe-style chain runs end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens.errors import ConfigError, ModelError, UnknownNameError
from quantlens.models.build import build_model
from quantlens.nn.convert import calibrate, quant_wrappers, quantize_model
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes import PASSES, PassContext, apply_pass


def test_registered_passes_and_their_stages():
    assert {"fold_bn", "cle", "bias_correction", "adaround"} <= set(PASSES.names())
    stages = {name: PASSES.get(name).stage for name in ("fold_bn", "cle", "bias_correction", "adaround")}
    assert stages == {"fold_bn": "float", "cle": "float", "bias_correction": "quantized", "adaround": "quantized"}
    for name, registered in PASSES.items():
        assert registered.__doc__ and "Preserves" in registered.description, name


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean fold_bn"):
        PASSES.get("fold_bm")


def test_unknown_option_and_stage_mismatch():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).eval()
    with pytest.raises(ConfigError, match="accepted: iterations, tolerance, relu6"):
        apply_pass("cle", model, relu_6="skip")
    qmodel = quantize_model(model, {"0": LayerPlan(weights=TensorSpec("int8", "channel"))})
    with pytest.raises(ModelError, match="before quantization"):
        apply_pass("fold_bn", qmodel)


def test_recipe_chain_fold_cle_quantize_calibrate_bias_correction():
    torch.manual_seed(0)
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32).eval()
    batches = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    reports = []
    float_model = model
    for name in ("fold_bn", "cle"):
        registered = PASSES.get(name)
        float_model, report = registered.run(float_model, PassContext(options={}))
        reports.append(report)
    assert len(reports[0]["folded"]) == 19 and len(reports[1]["pairs"]) == 9
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(float_model(x), model(x), rtol=1e-4, atol=1e-5)
    plans = {n: LayerPlan(weights=TensorSpec("int8", "channel"), inputs=TensorSpec("int8"))
             for n, m in float_model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    qmodel = quantize_model(float_model, plans)
    calibrate(qmodel, batches)
    context = PassContext(float_model=float_model, calibration=lambda: iter(batches),
                          generator=torch.Generator().manual_seed(0))
    qmodel_again, report = PASSES.get("bias_correction").run(qmodel, context)
    assert qmodel_again is qmodel and len(report["corrected"]) == len(list(quant_wrappers(qmodel)))
