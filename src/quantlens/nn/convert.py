"""Convert a float model into a fake-quantized one and back; calibrate; record quantized tensors.

    qmodel = quantize_model(model, plans)          # the caller's model is untouched (deep copy)
    calibrate(qmodel, batches)                     # static input/output ranges
    model_again = dequantize_model(qmodel)         # the float modules, unwrapped
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from quantlens import events
from quantlens.devices import module_device
from quantlens.errors import DataError, ModelError
from quantlens.nn import layers  # noqa: F401  (registers the quantizable layer types)
from quantlens.nn.registry import kind_of
from quantlens.nn.spec import LayerPlan
from quantlens.nn.wrapper import QuantWrapper


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _check_finite(model: nn.Module, names: Iterable[str]) -> None:
    """Refuse NaN/Inf in the parameters of layers about to be quantized, naming each layer."""
    bad = []
    for name in names:
        for pname, tensor in model.get_submodule(name).named_parameters(recurse=False):
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{name}.{pname} ({count} non-finite of {tensor.numel()})")
    if bad:
        raise ModelError(f"non-finite weights (NaN/Inf) in {len(bad)} tensor(s): {', '.join(bad[:5])}"
                         + (" ..." if len(bad) > 5 else ""))


def quantize_model(model: nn.Module, plans: Mapping[str, LayerPlan], *, inplace: bool = False) -> nn.Module:
    """Wrap every planned layer in a QuantWrapper. Names are `model.named_modules()` names."""
    active = {name: plan for name, plan in plans.items() if plan.active}
    _check_finite(model, active)
    target = model if inplace else copy.deepcopy(model)
    for name, plan in active.items():
        module = target.get_submodule(name)
        if isinstance(module, QuantWrapper):
            raise ModelError(f"layer {name!r} is already quantized")
        kind = kind_of(module)
        if kind is None:
            raise ModelError(f"layer {name!r} is a {type(module).__name__}, which has no quantized form")
        _set_submodule(target, name, QuantWrapper(module, kind, plan, name))
    return target


def dequantize_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """The model with every QuantWrapper replaced by the float module it wraps."""
    target = model if inplace else copy.deepcopy(model)
    for name, wrapper in list(quant_wrappers(target)):
        _set_submodule(target, name, wrapper.module)
    return target


def quant_wrappers(model: nn.Module) -> Iterator[tuple[str, QuantWrapper]]:
    for name, module in model.named_modules():
        if isinstance(module, QuantWrapper):
            yield name, module


@torch.inference_mode()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], total: int | None = None) -> int:
    """Run `batches` through the model in float, on the model's device, observing ranges; then fix
    the static scales. `total`: the number of samples, for progress.

    Returns the number of samples seen. The model is in eval mode during calibration."""
    quantizers = [q for _, w in quant_wrappers(model) for q in w.activation_quantizers()]
    was_training = model.training
    model.eval()
    device = module_device(model)
    seen = 0
    try:
        for q in quantizers:
            q.start_calibration()
        with events.task("calibrating", total=total, unit="images") as progress, torch.no_grad():
            for x in batches:  # observing needs no gradients (and skips building an autograd graph)
                if not isinstance(x, torch.Tensor):
                    raise DataError(f"calibrate takes batches of input tensors, got {type(x).__name__}; "
                                    "quantlens.quantize also takes (x, y) batches, dicts, Datasets and DataLoaders")
                model(x.to(device))
                seen += len(x)
                progress.advance(len(x))
    finally:
        for q in quantizers:
            q.calibrating = False
        model.train(was_training)
    if seen == 0:
        raise ModelError("calibration needs at least one batch")
    for q in quantizers:
        q.finish_calibration()
    return seen


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[None]:
    """Keep the last quantized value of every quantizer (for compliance checks) inside the block."""
    recorders = [q.record for _, w in quant_wrappers(model)
                 for q in (*w.activation_quantizers(), *w.param_quantizers.values())]
    for r in recorders:
        r.recording, r.last = True, None
    try:
        yield
    finally:
        for r in recorders:
            r.recording = False


def clear_recordings(model: nn.Module) -> None:
    for _, w in quant_wrappers(model):
        for q in (*w.activation_quantizers(), *w.param_quantizers.values()):
            q.record.last = None
