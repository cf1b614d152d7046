"""Check a fake-quant model against a dynamic INT8 target and read out each Linear's integer weights.

    layers = dynamic_linears(qmodel, "onnxruntime")   # one DynamicLinear per quantized layer
    layers[0].codes, layers[0].scale                  # int8 (O, K) codes, float32 (O,) scales

Every quantized layer must be a Linear whose weights are a signed symmetric integer of at most 8 bits
(per output channel or per tensor) and whose input is quantized dynamically exactly as the target does
(targets.py); anything else is a one-line BackendError naming the layer, the role and the fix. The codes
are quantlens's own: taken from the simulation's fake-quantized weight, and checked to reproduce it bit
for bit (code * scale in float32), so the deployed weights are the simulated weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantlens.backends.base import BackendError
from quantlens.backends.dynamic_int8.targets import DynamicTarget, get_target
from quantlens.formats import IntFormat
from quantlens.nn.convert import quant_wrappers
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import PerChannel, PerTensor


@dataclass(frozen=True)
class DynamicLinear:
    """One quantized Linear as the runtimes store it.

    codes: int8 (O, K), quantlens's weight codes; scale: float32 (O,) (a per-tensor scale repeated);
    bias: float32 (O,) or None (kept in float: the runtimes add it after rescaling the int32 sums)."""

    name: str
    codes: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None
    per_channel: bool

    @property
    def in_features(self) -> int:
        return int(self.codes.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.codes.shape[0])


def _check_weights(spec: TensorSpec | None, where: str) -> None:
    if spec is None:
        raise BackendError(f"{where}: weights are not quantized (dynamic INT8 stores int8 weight codes; "
                           "set weights.mode to 'channel' or 'tensor')")
    fmt = spec.format
    if not (isinstance(fmt, IntFormat) and fmt.signed and fmt.symmetric and fmt.bits <= 8):
        raise BackendError(f"{where}: {fmt.name} weights have no dynamic INT8 form (it needs signed symmetric "
                           "integers of at most 8 bits: int8, int7, int8_narrow ...)")
    if spec.mode not in ("channel", "tensor"):
        raise BackendError(f"{where}: per-block weight scales ({spec.describe()}) have no dynamic INT8 form "
                           "(use weights.mode 'channel' or 'tensor')")


def check_inputs(spec: TensorSpec | None, where: str, target: DynamicTarget, in_features: int) -> None:
    """BackendError unless `spec` quantizes a Linear input of width `in_features` exactly as `target` does."""
    wanted = target.describe_inputs()
    if spec is None:
        raise BackendError(f"{where}: inputs are not quantized; {target.runtime} quantizes every Linear input "
                           f"at run time ({wanted}): the simulation must too")
    if spec.static:
        raise BackendError(f"{where}: static activation observer {spec.observer!r}; {target.runtime} measures "
                           "the range on every call (set inputs.observer: dynamic)")
    if spec.format.name != target.activation_format:
        raise BackendError(f"{where}: inputs in {spec.format.name}; {target.runtime} quantizes them as {wanted} "
                           f"(set inputs.format: {target.activation_format})")
    if target.granularity == "tensor" and spec.mode != "tensor":
        raise BackendError(f"{where}: inputs scaled {spec.describe()}; {target.runtime} uses one scale per "
                           "input tensor (set inputs.mode: tensor)")
    if target.granularity == "row" and (spec.mode != "block" or spec.chunk_size < in_features):
        raise BackendError(f"{where}: inputs scaled {spec.describe()}; {target.runtime} uses one scale per row of "
                           f"{in_features} inputs (set inputs.mode: block with block_size >= {in_features})")
    if spec.rounding != "nearest_even":
        raise BackendError(f"{where}: {spec.rounding} rounding of inputs is simulation only ({target.runtime} "
                           "rounds to nearest even)")
    if spec.divide != target.divide:
        how = "divides x / scale" if target.divide else "multiplies by the float32 reciprocal of the scale"
        fix = "deployment" if target.divide else "fake_quant"
        raise BackendError(f"{where}: {target.runtime} {how}; the simulation does not (set simulation: {fix})")


def check_plan(name: str, module: nn.Module, plan: LayerPlan, target: DynamicTarget) -> None:
    """BackendError naming the first role of one planned layer that `target` cannot run."""
    if not isinstance(module, nn.Linear):
        kind = type(module).__name__
        raise BackendError(f"{name}: a quantized {kind}; dynamic INT8 deploys Linear layers only (leave it in "
                           f"float: override {{type: {kind}, skip: true}})")
    _check_weights(plan.weights, f"{name} weights")
    check_inputs(plan.inputs, f"{name} inputs", target, module.in_features)
    if plan.outputs is not None:
        raise BackendError(f"{name} outputs: quantized outputs have no dynamic INT8 form (the runtimes return "
                           "float32; set outputs.mode: none)")


def check_plans(model: nn.Module, plans: dict[str, LayerPlan], target: str | DynamicTarget) -> None:
    """Check a recipe's per-layer plans on `model` before quantizing (see `check_plan`)."""
    target = get_target(target)
    for name, plan in plans.items():
        if plan.active:
            check_plan(name, model.get_submodule(name), plan, target)


def _codes(wrapper: QuantWrapper, where: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(int8 codes (O, K), float32 scale (O,), per channel) from the simulated fake-quantized weight."""
    pq = wrapper.param_quantizers["weight"]
    weight = wrapper.module.weight
    with torch.no_grad():
        simulated = pq(weight).detach().float()  # (O, K): code * scale in float32
        params = pq.params_for(weight)
    if isinstance(params.granularity, PerChannel) and params.granularity.axis in (0, -2):
        scale = params.scale.reshape(-1).float()
    elif isinstance(params.granularity, PerTensor):
        scale = params.scale.reshape(1).float().expand(simulated.shape[0]).contiguous()
    else:
        raise BackendError(f"{where}: weight scales along {params.granularity!r} have no dynamic INT8 form "
                           "(one scale per output feature, or per tensor)")
    if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise BackendError(f"{where}: non-finite or non-positive weight scales; nothing to deploy")
    fmt = pq.spec.format
    codes = torch.round(simulated / scale[:, None])  # exact: simulated = code * scale, |code| <= 127
    if bool((codes < fmt.qmin).any()) or bool((codes > fmt.qmax).any()):
        raise BackendError(f"{where}: weight codes outside {fmt.name}'s range; export refused")
    back = codes * scale[:, None]
    if not torch.equal(back, simulated):
        raise BackendError(f"{where}: int8 codes do not reproduce the simulated weight exactly (max |diff| "
                           f"{float((back - simulated).abs().max()):.3g}); export refused")
    return codes.to(torch.int8).contiguous(), scale.contiguous(), isinstance(params.granularity, PerChannel)


def dynamic_linears(qmodel: nn.Module, target: str | DynamicTarget) -> list[DynamicLinear]:
    """Every quantized layer of `qmodel`, checked for `target`, with quantlens's integer weights.

    BackendError (one line) for a model without quantized layers, any quantized layer `target` cannot run,
    or weights whose codes do not reproduce the simulation."""
    target = get_target(target)
    wrappers = list(quant_wrappers(qmodel))
    if not wrappers:
        raise BackendError("dynamic INT8 needs a quantized model (quantize_dynamic_int8, or quantize_model with "
                           "a dynamic INT8 recipe); this one has no quantized layer")
    layers = []
    for name, wrapper in wrappers:
        plan = LayerPlan(weights=wrapper.param_quantizers["weight"].spec if "weight" in wrapper.param_quantizers
                         else None,
                         inputs=wrapper.input_quantizers[0].spec if len(wrapper.input_quantizers) else None,
                         outputs=wrapper.output_quantizer.spec if wrapper.output_quantizer is not None else None)
        check_plan(name, wrapper.module, plan, target)
        codes, scale, per_channel = _codes(wrapper, f"{name} weights")
        bias = wrapper.module.bias
        layers.append(DynamicLinear(name, codes, scale, None if bias is None else bias.detach().float().clone(),
                                    per_channel))
    return layers
