"""The quantlens recipe that simulates a dynamic INT8 target, and its plan for one model.

    cfg = dynamic_int8_config(model, "onnxruntime")   # a QuantizationConfig (YAML-able: cfg.model_dump())
    qmodel = quantize_dynamic_int8(model, "onnxruntime")  # fake-quant model; no calibration needed

The recipe: int8 weights (per output channel by default, symmetric: quantlens's own scales go into the
deployed artefact), inputs of Linear layers quantized on every call as the target does (targets.py),
outputs in float, `input_ops: matmul` (LayerNorm, GELU, softmax and residual adds stay float), and every
other matmul-like layer type present in the model (convolutions, attention matmuls) skipped by type:
dynamic INT8 here runs Linear layers only.
"""

from __future__ import annotations

from torch import nn

from quantlens.backends.base import BackendError
from quantlens.backends.dynamic_int8.targets import DynamicTarget, get_target
from quantlens.nn import quantize_model
from quantlens.nn.registry import kind_of
from quantlens.recipes.planning import ModelPlan, plan_layers
from quantlens.recipes.quantization import QuantizationConfig

WEIGHT_MODES = ("channel", "tensor")


def _linear_inputs(model: nn.Module) -> list[int]:
    return [m.in_features for m in model.modules() if isinstance(m, nn.Linear)]


def skipped_types(model: nn.Module) -> list[str]:
    """Quantizable matmul-like layer types in `model` other than Linear (their inputs would be quantized
    under `input_ops: matmul`), sorted."""
    names = set()
    for module in model.modules():
        kind = kind_of(module)
        if kind is not None and kind.matmul and not isinstance(module, nn.Linear):
            names.add(kind.name)
    return sorted(names)


def dynamic_int8_config(model: nn.Module, target: str | DynamicTarget = "onnxruntime", *,
                        weights_mode: str = "channel", weights_format: str = "int8", name: str = "",
                        exclude: tuple[str, ...] = ()) -> QuantizationConfig:
    """The QuantizationConfig simulating `target` on `model`'s Linear layers (see the module docstring).

    weights_mode: 'channel' (one scale per output feature) or 'tensor'; weights_format: a signed symmetric
    integer of at most 8 bits (int8, int7 ...); exclude: globs of Linear layers left in float."""
    target = get_target(target)
    if weights_mode not in WEIGHT_MODES:
        raise BackendError(f"weights_mode must be one of {', '.join(WEIGHT_MODES)}, got {weights_mode!r}")
    widths = _linear_inputs(model)
    if not widths:
        raise BackendError(f"dynamic INT8 quantizes Linear layers; {type(model).__name__} has none")
    return QuantizationConfig(
        name=name or f"dynamic-int8-{target.name}", format="int8",
        weights={"format": weights_format, "mode": weights_mode},
        inputs=target.inputs_recipe(max(widths)), input_ops="matmul", simulation=target.simulation,
        exclude=tuple(exclude), overrides=tuple({"type": t, "skip": True} for t in skipped_types(model)))


def plan_dynamic_int8(model: nn.Module, cfg: QuantizationConfig) -> ModelPlan:
    """`plan_layers` for a dynamic INT8 recipe; BackendError when the selection is surely a mistake."""
    plan = plan_layers(model, cfg)
    problem = plan.problem()
    if problem is not None:
        where, why = problem
        raise BackendError(f"dynamic INT8 recipe{f' ({where})' if where else ''}: {why}")
    return plan


def quantize_dynamic_int8(model: nn.Module, target: str | DynamicTarget = "onnxruntime", **options) -> nn.Module:
    """A fake-quant copy of `model` simulating `target` (options: those of `dynamic_int8_config`).
    Dynamic ranges need no calibration: the model is ready to evaluate."""
    cfg = dynamic_int8_config(model, target, **options)
    return quantize_model(model, plan_dynamic_int8(model, cfg).layers)
