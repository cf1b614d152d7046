"""Model passes by name, for PTQ recipes: `passes: [fold_bn, cle, bias_correction]`.

    model, report = apply_pass("fold_bn", model)                           # float stage
    model, report = apply_pass("cle", model, relu6="clip")
    qmodel = quantize_model(model, plans); calibrate(qmodel, batches)
    qmodel, report = apply_pass("bias_correction", qmodel, float_model=model, calibration=batches)

or, from a recipe loop: `registered = PASSES.get(name)`; `registered.stage`; `model, report =
registered.run(model, PassContext(float_model=..., calibration=..., options=..., generator=...))`.

Every pass is a `Pass`: a name, a `stage` ("float": runs on the float model before
quantization and returns a new model, the input untouched; "quantized": runs on a quantized and
calibrated model, after `calibrate`, and edits it in place), the context it needs
(`float_model`, `calibration`), the keyword options it accepts, and its docstring (first line: a
summary; then what the pass preserves and changes). `run` checks the options (unknown ones:
ConfigError listing the accepted ones), the context (missing: ConfigError) and the stage (a
float pass on a quantized model, or the reverse: ModelError), then returns a `PassOutcome`, a
(model, report) pair whose report is a JSON-ready dict. Unknown pass names raise
UnknownNameError with close matches (the Registry does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from quantlens.errors import ConfigError, ModelError
from quantlens.nn.convert import quant_wrappers
from quantlens.passes.adaround import AdaRoundOptions, adaround
from quantlens.passes.batchnorm import fold_batchnorm
from quantlens.passes.bias_correction import correct_bias
from quantlens.passes.equalization import equalize
from quantlens.registry import Registry

Stage = Literal["float", "quantized"]
Batches = Sequence[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]


@dataclass(frozen=True)
class PassContext:
    """What a pass may use besides the model it transforms.

    calibration: input batches (tensors, or (inputs, labels) pairs whose labels are ignored), as
    a sequence or a callable returning a fresh iterable; data passes read them more than once.
    generator: seeds what a pass draws at random (AdaRound's sample order) unless a seed option is given.
    """

    float_model: nn.Module | None = None  # quantized stage: the float model the quantized one came from
    calibration: Batches | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # the pass's keyword options
    generator: torch.Generator | None = None

    def batches(self) -> list[torch.Tensor]:
        """The calibration inputs as a list of tensors (read once)."""
        source = self.calibration() if callable(self.calibration) else self.calibration
        return [b[0] if isinstance(b, (tuple, list)) else b for b in source or ()]


class PassOutcome(NamedTuple):
    model: nn.Module  # the model to carry on with
    report: dict  # what the pass did, JSON-ready


class Pass:
    """A registered pass; its `__doc__` is the pass's own description."""

    def __init__(self, name: str, stage: Stage, function: Callable[[nn.Module, PassContext], PassOutcome],
                 needs: tuple[str, ...], options: tuple[str, ...]) -> None:
        self.name, self.stage, self.function = name, stage, function
        self.needs, self.options = needs, options  # PassContext fields that must be given; keyword options
        self.__doc__ = function.__doc__

    @property
    def description(self) -> str:
        return (self.__doc__ or "").strip()

    def run(self, model: nn.Module, context: PassContext) -> PassOutcome:
        unknown = sorted(set(context.options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ConfigError(f"pass {self.name}: unknown option(s) {', '.join(unknown)} (accepted: {allowed})")
        missing = [n for n in self.needs if getattr(context, n) is None]
        if missing:
            raise ConfigError(f"pass {self.name} needs {' and '.join(missing)}")
        quantized = any(True for _ in quant_wrappers(model))
        if self.stage == "float" and quantized:
            raise ModelError(f"pass {self.name} runs on the float model, before quantization; "
                             "this model is quantized")
        if self.stage == "quantized" and not quantized:
            raise ModelError(f"pass {self.name} runs on a quantized, calibrated model (after quantize_model "
                             "and calibrate); this model has no quantized layers")
        return self.function(model, context)

    def __repr__(self) -> str:
        return f"Pass({self.name!r}, stage={self.stage!r})"


PASSES: Registry[Pass] = Registry("pass")


def register_pass(name: str, stage: Stage, *, needs: tuple[str, ...] = (), options: tuple[str, ...] = ()):
    """Decorator: register `function(model, context) -> PassOutcome` as the pass `name`."""

    def decorate(function: Callable[[nn.Module, PassContext], PassOutcome]):
        PASSES.add(name, Pass(name, stage, function, needs, options))
        return function

    return decorate


def apply_pass(name: str, model: nn.Module, *, float_model: nn.Module | None = None,
               calibration: Batches | None = None, generator: torch.Generator | None = None,
               **options) -> PassOutcome:
    """Run the registered pass `name` on `model` with the given context and options."""
    return PASSES.get(name).run(model, PassContext(float_model, calibration, options, generator))


@register_pass("fold_bn", "float")
def _fold_bn(model: nn.Module, context: PassContext) -> PassOutcome:
    """Fold each BatchNorm into the conv/linear before it (eval-mode running statistics).

    The BN's name then holds an nn.Identity. Preserves: the eval-mode function (float rounding
    aside), the model's class and every other module name. Refuses a model in train mode.
    Report: folded (BN -> layer), not_folded (BN -> reason), skipped."""
    result = fold_batchnorm(model)
    return PassOutcome(result.model, result.to_dict())


@register_pass("cle", "float", options=("iterations", "tolerance", "relu6"))
def _cle(model: nn.Module, context: PassContext) -> PassOutcome:
    """Cross-layer equalisation: balance per-channel weight ranges of consecutive layers (run fold_bn first).

    Pairs of conv/linear layers joined through ReLU, pooling, identity or nothing. Preserves: the
    eval-mode function and layer names; a ReLU6 between a pair becomes a per-channel ChannelClamp
    at its name (relu6="clip", the default), or the pair is skipped (relu6="skip"). Options:
    iterations=20, tolerance=1e-4, relu6="clip". Report: pairs, not_paired, clamps, iterations,
    uniformity_before/after (mean min/max per-channel weight range)."""
    result = equalize(model, **context.options)
    return PassOutcome(result.model, result.to_dict())


@register_pass("bias_correction", "quantized", needs=("float_model", "calibration"))
def _bias_correction(model: nn.Module, context: PassContext) -> PassOutcome:
    """Empirical bias correction: cancel the mean output shift weight quantization causes, per channel.

    Each quantized conv/linear's bias becomes the float bias plus E[(W - W_q) x] on the
    calibration data. Preserves: layer names, weights and every quantizer's scales; changes
    biases only (edits the quantized model in place). Report: corrected, skipped, samples."""
    result = correct_bias(model, context.float_model, context.batches())
    return PassOutcome(result.model, result.to_dict())


@register_pass("adaround", "quantized", needs=("calibration",),
               options=tuple(f.name for f in dataclasses.fields(AdaRoundOptions)))
def _adaround(model: nn.Module, context: PassContext) -> PassOutcome:
    """AdaRound: learn each integer weight's rounding (up or down) to reconstruct layer outputs.

    Writes the rounded (dequantized) weights and freezes their scales. Preserves: layer names
    and scales; changes weights (in place). Integer weight formats only. Options:
    iterations=1000, batch_size=32, max_samples=1024, lr=1e-3, reg_weight=0.01, beta_start=20,
    beta_end=2, warmup=0.2, seed (default: drawn from the context's generator, else 0),
    keep_better=True. Report: per-layer loss_nearest/loss_adaround, used, changed; skipped."""
    options = dict(context.options)
    if "seed" not in options and context.generator is not None:
        options["seed"] = int(torch.randint(2**31 - 1, (1,), generator=context.generator))
    result = adaround(model, context.batches(), **options)
    return PassOutcome(result.model, result.to_dict())
