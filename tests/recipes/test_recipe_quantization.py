"""The quantization entry, version 2: one tensor recipe per role, defaults and labels as in version 1,
overrides that set any recipe field, errors that name the field, and round trips."""

from __future__ import annotations

from typing import get_args

import pytest
from torch import nn

from quantlens.errors import ConfigError
from quantlens.experiments.spec import spec_from_dict
from quantlens.recipes import plan_layers
from quantlens.recipes import tensor as tensor_module
from quantlens.recipes.quantization import Override, QuantizationConfig
from quantlens.recipes.tensor import NormPatch, NormRecipe, RecipePatch, TensorRecipe


@pytest.mark.parametrize(("entry", "label"), [
    ({}, "w:int8/channel in:int8/tensor"),
    ({"format": "mxfp4"}, "w:mxfp4/block32 in:mxfp4/block32"),
    ({"format": "nvfp4"}, "w:nvfp4/block16 in:nvfp4/block16"),
    ({"format": "fp8_e4m3", "norm": {"mode": "tensor"}}, "w:fp8_e4m3/channel in:fp8_e4m3/tensor bn:fp8_e4m3/tensor"),
    ({"format": "int4", "inputs": {"format": "int8"}}, "w:int4/channel in:int8/tensor"),
    ({"format": "mxfp4", "outputs": {"mode": "block"}}, "w:mxfp4/block32 in:mxfp4/block32 out:mxfp4/block32"),
    ({"weights": {"mode": "block", "block_size": 64}}, "w:int8/block64 in:int8/tensor"),
    ({"input_ops": "matmul"}, "w:int8/channel in:int8/tensor in:matmul-only"),
    ({"weights": {"mode": "none"}, "inputs": {"mode": "none"}}, "float"),
    ({"name": "mine"}, "mine"),
])
def test_labels_as_in_version_1(entry, label):
    assert QuantizationConfig(**entry).label == label


def test_role_defaults():
    cfg = QuantizationConfig(format="fp8_e4m3")
    assert {r: getattr(cfg, r).format for r in ("weights", "inputs", "outputs", "norm")} == dict.fromkeys(
        ("weights", "inputs", "outputs", "norm"), "fp8_e4m3")
    assert (cfg.weights.mode, cfg.inputs.mode, cfg.outputs.mode, cfg.norm.mode) == ("channel", "tensor", "none", "none")
    assert cfg.weights.block_size == 32 and cfg.inputs.observer == "max" and cfg.weights.scale == "fp32"
    assert cfg.weights.rounding == "nearest_even" and cfg.overflow == "saturate" and cfg.version == 2
    nv = QuantizationConfig(format="nvfp4")
    assert (nv.weights.mode, nv.weights.block_size, nv.outputs.mode, nv.outputs.block_size) == ("block", 16, "none", 16)
    pinned = QuantizationConfig(format="int8", weights={"format": "mxfp4"})  # a role's block format
    assert (pinned.weights.mode, pinned.weights.block_size, pinned.inputs.format) == ("block", 32, "int8")


def test_a_recipe_built_in_code_counts_what_it_was_given():
    cfg = QuantizationConfig(format="mxfp4", weights=TensorRecipe(format="int4"))
    assert (cfg.weights.format, cfg.weights.mode) == ("int4", "channel")  # the weights' default mode
    assert cfg.inputs.format == "mxfp4" and cfg.inputs.mode == "block"


def _error(entry: dict) -> str:
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"quantization": [entry]})
    return str(info.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({"weights": {"format": "fp9"}}, "quantization.0.weights.format: unknown number format 'fp9'"),
    ({"format": "mxfp4", "weights": {"mode": "tensor"}},
     "quantization.0.weights: mxfp4 is a block format (blocks of 32); set mode to 'block' or 'none', not 'tensor'"),
    ({"weights": {"format": "nvfp4", "block_size": 32}}, "quantization.0.weights: nvfp4 fixes blocks of 16"),
    ({"norm": {"mode": "block"}}, "quantization.0.norm.mode: Input should be 'none', 'tensor' or 'channel'"),
    ({"norm": {"mode": "channel", "format": "mxfp4"}},
     "quantization.0.norm: mxfp4 is a block format; normalisation parameters take 'tensor' or 'channel'"),
    ({"inputs": {"observer": "entrpy"}}, "quantization.0.inputs.observer: unknown observer 'entrpy'; did you mean "
                                         "entropy?"),
    ({"inputs": {"observer": "percentile", "observer_options": {"percentile": 101.0}}},
     "quantization.0.inputs: observer 'percentile': "),
    ({"inputs": {"observer": "max", "observer_options": {"bins": 10}}}, "quantization.0.inputs: observer 'max': "),
    ({"inputs": {"observer": "dynamic", "observer_options": {"bins": 10}}},
     "quantization.0.inputs: observer 'dynamic' takes no observer_options"),
    ({"weights": {"observer": "entropy"}}, "quantization.0.weights: observer 'entropy': "),
    ({"weights": {"format": "mxfp4", "mx_rule": "round"}}, "quantization.0.weights.mx_rule: Input should be"),
    ({"passes": ["fold_bm"]}, "quantization.0.passes.0.name: unknown pass 'fold_bm'; did you mean fold_bn"),
    ({"passes": [{"name": "adaround", "options": {"iterations": 1.5e400}}]}, "quantization.0.passes.0.options"),
    ({"outputs": {"scale": "fp16"}}, "quantization.0.outputs.scale: Input should be 'fp32' or 'pow2'"),
    ({"weights": {"block_size": 0}}, "quantization.0.weights.block_size: Input should be greater than 0"),
    ({"weights": "int4"}, "quantization.0.weights: Input should be a mapping"),
    ({"overrides": [{"match": "x", "weights": {"format": "fp9"}}]},
     "quantization.0.overrides.0.weights.format: unknown number format 'fp9'"),
    ({"format": "mxfp4", "overrides": [{"match": "x", "inputs": {"mode": "channel"}}]},
     "quantization.0.overrides.0.inputs: mxfp4 is a block format"),
    ({"overrides": [{"match": "x", "norm": {"mode": "block"}}]}, "quantization.0.overrides.0.norm.mode"),
    ({"overrides": [{"match": "x", "weights": {"formt": "int4"}}]},
     "unknown key 'quantization.0.overrides.0.weights.formt' (known: format, mode, block_size, observer, "
     "observer_options, mx_rule, scale, rounding)"),
    ({"overrides": [{"weights": {"format": "int4"}}]}, "quantization.0.overrides.0: an override needs 'match'"),
    ({"weigths": {}}, "unknown key 'quantization.0.weigths' (known: version, name, format, weights, inputs"),
])
def test_errors_name_the_field(entry, message):
    assert message in _error(entry)


def _model() -> nn.Module:
    # names: 0 conv, 1 batchnorm, 2 relu, 3 flatten, 4 linear
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))


def test_overrides_set_every_recipe_field():
    cfg = QuantizationConfig(format="int8", overrides=[
        {"match": "0", "weights": {"format": "int4", "mode": "tensor", "scale": "pow2", "rounding": "stochastic"},
         "inputs": {"format": "fp8_e4m3", "observer": "dynamic"}, "outputs": {"mode": "block", "block_size": 8}},
        {"type": "BatchNorm2d", "norm": {"mode": "channel", "scale": "pow2"}},
        {"type": "ReLU", "inputs": {"mode": "tensor"}}])  # turns on inputs a ReLU keeps in float by default
    plan = plan_layers(_model(), cfg)
    conv = plan.layers["0"]
    assert conv.weights.describe() == "int4/tensor" and conv.weights.scale_kind == "pow2"
    assert conv.weights.rounding == "stochastic"
    assert conv.inputs.describe() == "fp8_e4m3/tensor" and not conv.inputs.static
    assert conv.outputs.describe() == "int8/block8"
    norm = plan.layers["1"].norm
    assert norm.describe() == "int8/channel" and norm.scale_kind == "pow2" and plan.layers["1"].inputs is None
    assert plan.layers["2"].inputs is not None
    linear = plan.layers["4"]
    assert linear.weights.describe() == "int8/channel" and linear.weights.scale_kind == "fp32"
    assert linear.outputs is None


def test_overrides_merge_field_by_field_in_order():
    cfg = QuantizationConfig(format="int8", overrides=[
        {"match": "[04]", "weights": {"format": "int4"}}, {"match": "0", "weights": {"scale": "pow2"}},
        {"match": "4", "weights": {"format": "mxfp4"}}])  # a block format brings block mode and its size
    plan = plan_layers(_model(), cfg)
    assert plan.layers["0"].weights.describe() == "int4/channel" and plan.layers["0"].weights.scale_kind == "pow2"
    assert plan.layers["4"].weights.describe() == "mxfp4/block32"


def test_overrides_valid_alone_but_not_together_are_refused_by_the_plan():
    cfg = QuantizationConfig(format="int8", overrides=[{"match": "0", "weights": {"format": "mxfp4"}},
                                                       {"type": "Conv2d", "weights": {"mode": "channel"}}])
    where, why = plan_layers(_model(), cfg).problem()
    assert where == "overrides.1" and "overrides.0" in why and "'0'" in why and "mxfp4 is a block format" in why


def test_entry_round_trips():
    entries = [{}, {"format": "mxfp4", "outputs": {"mode": "block"}},
               {"format": "fp8_e4m3", "weights": {"format": "int4", "scale": "pow2"}, "norm": {"mode": "channel"},
                "overrides": [{"match": "layer3.*", "weights": {"format": "mxfp4"}, "skip": False},
                              {"type": "Add", "inputs": {"mode": "none"}}]}]
    for entry in entries:
        cfg = QuantizationConfig(**entry)
        assert QuantizationConfig.model_validate(cfg.model_dump(mode="json")) == cfg
        assert QuantizationConfig.model_validate(cfg.editable_values()) == cfg


def test_overrides_are_written_as_given():
    override = Override(match="layer3.*", weights={"format": "int4"})
    assert override.model_dump() == {"match": "layer3.*", "skip": False, "weights": {"format": "int4"}}


def test_editable_values_leave_out_what_the_formats_imply():
    cfg = QuantizationConfig(format="mxfp4", weights={"format": "int4"}, inputs={"mode": "none"})
    values = cfg.editable_values()
    assert values["weights"] == {"format": "int4"} and values["inputs"] == {"mode": "none"}
    assert "outputs" not in values and "norm" not in values


def test_patches_and_recipes_have_the_same_fields():
    assert list(RecipePatch.model_fields) == list(TensorRecipe.model_fields)
    assert list(NormPatch.model_fields) == list(NormRecipe.model_fields)


def test_cli_choices_match_the_recipe_vocabularies():
    from quantlens import cli

    for name in ("Mode", "NormMode", "ScaleKind", "Rounding"):  # observers: a registry, checked by the recipe
        assert get_args(getattr(cli, name)) == get_args(getattr(tensor_module, name)), name
    assert get_args(cli.InputOps) == get_args(QuantizationConfig.model_fields["input_ops"].annotation)
