"""Post-training quantization, one call: float passes, quantize, calibrate, quantized passes.

    outcome = post_training_quantize(model, recipe, calibration)   # recipe: a QuantizationConfig
    outcome.model                                                   # calibrated fake-quant copy

`calibration` is a sequence of input batches (tensors) or a callable returning a fresh iterable of
them: passes such as bias correction and AdaRound read the calibration samples more than once.
The order is fixed: passes that change the float model (`fold_bn`, `cle`) run first, in the order
listed; then the recipe is planned on the transformed model (BatchNorms folded into convolutions
are Identity modules under their own names, so layer names and globs keep their meaning), the
model is wrapped and its static ranges calibrated; then passes that need the quantized model
(`bias_correction`, `adaround`) run in the order listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from quantlens import events
from quantlens.errors import ConfigError, DataError
from quantlens.nn import calibrate, quant_wrappers, quantize_model
from quantlens.passes.registry import PASSES, PassContext
from quantlens.recipes import ModelPlan, QuantizationConfig, plan_layers

Batches = Sequence[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]


@dataclass
class PtqOutcome:
    """The calibrated fake-quant model, the float model it was made from (after the float passes),
    the plan it followed, and what each pass reported (by pass name, in order)."""

    model: nn.Module
    float_model: nn.Module
    plan: ModelPlan
    calibration_samples: int
    passes: list[dict[str, Any]] = field(default_factory=list)


def _reader(calibration: Batches) -> Callable[[], Iterable[torch.Tensor]]:
    if callable(calibration):
        return calibration
    batches = list(calibration)
    return lambda: iter(batches)


def check_calibration_set(n: int, batch_size: int, where: str = "calibration") -> None:
    """ConfigError when the calibration set is empty or smaller than one batch."""
    if n == 0:
        raise ConfigError(f"{where}: the calibration set is empty; static ranges and passes need samples")
    if n < batch_size:
        raise ConfigError(f"{where}: the calibration set holds {n} samples, fewer than one batch "
                          f"(calibration_batch_size {batch_size}); give more calibration samples or a smaller batch")


def post_training_quantize(model: nn.Module, recipe: QuantizationConfig, calibration: Batches, *,
                           batch_size: int | None = None) -> PtqOutcome:
    """`model` quantized by `recipe` (a copy: the caller's model is untouched). `batch_size`: the
    smallest calibration set accepted (default: the first batch's size)."""
    was_training = model.training
    model.eval()  # post-training: BatchNorm folding and calibration use eval-mode semantics
    try:
        return _quantize(model, recipe, _reader(calibration), batch_size)
    finally:
        model.train(was_training)


def _run_passes(stage: str, model: nn.Module, recipe: QuantizationConfig, context: PassContext,
                reports: list[dict[str, Any]]) -> nn.Module:
    """The recipe's passes of one stage ('float' or 'quantized'), in the order listed; reports appended."""
    for step in recipe.passes:
        registered = PASSES.get(step.name)
        if registered.stage == stage:
            with events.task(f"pass {step.name}"):
                model, report = registered.run(model, replace(context, options=dict(step.options)))
            reports.append({"pass": step.name, **report})
    return model


def _batch_size(x: object) -> int:
    if not isinstance(x, torch.Tensor):
        raise DataError(f"calibration batches must be input tensors, got {type(x).__name__}; "
                        "quantlens.quantize also takes (x, y) batches, dicts, Datasets and DataLoaders")
    return len(x)


def _quantize(model: nn.Module, recipe: QuantizationConfig, read: Callable[[], Iterable[torch.Tensor]],
              batch_size: int | None) -> PtqOutcome:
    sizes = [_batch_size(x) for x in read()]  # one pass: the sample count and the first batch's size
    n = sum(sizes)
    check_calibration_set(n, batch_size or (sizes[0] if sizes else 1))
    generator = torch.Generator().manual_seed(recipe.calibration_seed)
    reports: list[dict[str, Any]] = []
    float_model = _run_passes("float", model, recipe, PassContext(calibration=read, generator=generator), reports)
    plan = plan_layers(float_model, recipe)
    problem = plan.problem()
    if problem is not None:
        where, why = problem
        raise ConfigError(f"{where or 'recipe'} ({recipe.label}): {why}")
    qmodel = quantize_model(float_model, plan.layers)
    static = any(q.uses_static_range for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers())
    seen = calibrate(qmodel, read(), total=n) if static else 0
    context = PassContext(float_model=float_model, calibration=read, generator=generator)
    qmodel = _run_passes("quantized", qmodel, recipe, context, reports)
    return PtqOutcome(qmodel, float_model, plan, seen, reports)
