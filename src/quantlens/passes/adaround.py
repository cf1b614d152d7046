"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Round-to-nearest picks each integer weight on its own. AdaRound picks, per weight, floor or
ceil so that the *layer output* stays close to the float one. Per quantized conv/linear, with the
scale s and zero point zp its ParamQuantizer uses (per tensor or per channel, fixed):

    W~(V) = s * (clamp(floor(W / s) + h(V) + zp, qmin, qmax) - zp)
    h(V)  = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)          zeta = 1.1, gamma = -0.1
    loss  = || W x - W~ x ||^2 + lambda * sum(1 - |2 h(V) - 1|^beta)

V starts where h(V) = frac(W / s) (so the soft weights start at W itself, unclamped); the
reconstruction term is the squared output error summed over output channels and averaged over
samples and positions (the bias cancels); the regulariser, off for the first `warmup` share of
the iterations, then pushes every h to 0 or 1 while beta falls linearly from 20 to 2. Finally
h >= 0.5 rounds up; the dequantized weights are written into `wrapper.module.weight` and the
scales are frozen (`ParamQuantizer.freeze`), so the wrapper's fake quantization reproduces them
exactly.

x is the input the layer computes with (after its input quantizer) in the quantized model,
whose earlier layers are already AdaRounded: layers go one at a time in execution order, each
seeing the rounding errors before it. Inputs of up to `max_samples` calibration samples are
cached on the model's device for each layer in turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from quantlens import events
from quantlens.devices import module_device
from quantlens.errors import ConfigError, ModelError
from quantlens.formats import BlockFormat, FloatFormat, IntFormat
from quantlens.nn.convert import quant_wrappers
from quantlens.passes.bias_correction import layer_output
from quantlens.passes.graph import each_layer_input, execution_order, layer_kind_ok
from quantlens.scaling import dequantize
from quantlens.scaling.qparams import QuantParams

ZETA, GAMMA = 1.1, -0.1


@dataclass
class AdaRoundLayer:
    """One layer's reconstruction loss (on its cached inputs) with nearest and with AdaRound rounding."""

    name: str
    loss_nearest: float
    loss_adaround: float
    used: str  # what was written: "adaround", or "nearest" where AdaRound came out worse (keep_better)
    changed: int  # weights rounded differently from round-to-nearest
    weights: int
    samples: int


@dataclass
class AdaRoundResult:
    model: nn.Module  # the quantized model itself, edited in place
    layers: list[AdaRoundLayer] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layers": [asdict(layer) for layer in self.layers], "skipped": dict(self.skipped)}


@dataclass(frozen=True)
class AdaRoundOptions:
    iterations: int = 1000  # optimiser steps per layer
    batch_size: int = 32  # cached samples per step
    max_samples: int = 1024  # calibration samples whose inputs are cached per layer
    lr: float = 1e-3  # Adam on V
    reg_weight: float = 0.01  # lambda
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2  # share of iterations without the regulariser
    seed: int = 0
    keep_better: bool = True  # keep round-to-nearest for a layer where AdaRound ends up worse

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "max_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"adaround: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"adaround: warmup must be in [0, 1), got {self.warmup}")
        if self.lr <= 0 or self.reg_weight < 0:
            raise ConfigError("adaround: lr must be > 0 and reg_weight >= 0")


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def _check_format(name: str, wrapper) -> None:
    spec = wrapper.param_quantizers["weight"].spec
    fmt = spec.format
    if isinstance(fmt, FloatFormat):
        raise ConfigError(f"AdaRound learns integer rounding; {fmt.name} is a float format (layer {name!r})")
    if isinstance(fmt, BlockFormat) or not isinstance(fmt, IntFormat):
        raise ConfigError(f"AdaRound learns integer rounding; {fmt.name} is a block format with shared "
                          f"power-of-two scales (layer {name!r})")
    if spec.mode == "block":
        raise ConfigError(f"AdaRound supports per-tensor and per-channel integer scales; layer {name!r} "
                          f"uses per-block scales")


class _Rounding:
    """The integer grid around one weight matrix: floor(W / s), the rest, and the soft/hard weights."""

    def __init__(self, view: torch.Tensor, params: QuantParams, fmt: IntFormat) -> None:
        # view: (O, fan_in); scale and zero point (O, 1) per channel or (1, 1) per tensor
        self.params, self.fmt = params, fmt
        self.scale = params.scale.to(torch.float32)
        self.zp = params.zero_point.to(torch.float32)
        inv = torch.where(self.scale == 0, torch.zeros_like(self.scale), 1.0 / self.scale)  # as the kernel divides
        scaled = view * inv
        self.floor = torch.floor(scaled)
        self.rest = scaled - self.floor  # [0, 1)

    def initial_v(self) -> torch.Tensor:
        p = ((self.rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))  # h(V) = rest

    def soft(self, h: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(self.floor + h + self.zp, self.fmt.qmin, self.fmt.qmax)
        return (q - self.zp) * self.scale

    def hard(self, up: torch.Tensor) -> torch.Tensor:
        """Dequantized weights for the rounding `up` (bool, view shape), exactly as the kernels write them."""
        q = torch.clamp(self.floor + up.to(torch.float32) + self.zp, self.fmt.qmin, self.fmt.qmax)
        return dequantize(q, self.fmt, self.params)


def _loss(layer: nn.Module, x: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """Squared output error summed over output channels, averaged over samples and positions."""
    y = layer_output(layer, x, dw, None)  # (N, C, ...) or (N, ..., C)
    axis = -1 if isinstance(layer, nn.Linear) else 1
    return y.pow(2).sum(axis).mean()


def _full_loss(layer: nn.Module, cache: torch.Tensor, dw: torch.Tensor, batch_size: int) -> float:
    with torch.no_grad():
        total = sum(float(_loss(layer, chunk, dw)) * len(chunk) for chunk in cache.split(batch_size))
    return total / len(cache)


def adaround(model: nn.Module, batches: Iterable[torch.Tensor], **options) -> AdaRoundResult:
    """AdaRound every quantized conv/linear of `model` (quantized and calibrated) in place.

    Options (AdaRoundOptions): iterations=1000, batch_size=32, max_samples=1024, lr=1e-3,
    reg_weight=0.01, beta_start=20, beta_end=2, warmup=0.2, seed=0, keep_better=True.
    Refuses (ConfigError) any weight quantizer whose format is not an integer format."""
    opts = AdaRoundOptions(**options)
    batches = list(batches)
    if not batches:
        raise ModelError("adaround needs at least one calibration batch")
    wrappers = dict(quant_wrappers(model))
    for name, wrapper in wrappers.items():
        if "weight" in wrapper.param_quantizers:
            _check_format(name, wrapper)
    device = module_device(model)
    was_training = model.training
    model.eval()
    result = AdaRoundResult(model)
    generator = torch.Generator().manual_seed(opts.seed)
    try:
        order = execution_order(model, batches[0].to(device))
        for name in wrappers:
            if name not in order:
                result.skipped[name] = "not reached by a forward pass"
        todo = []
        for name in order:
            if layer_kind_ok(wrappers[name]):
                todo.append(name)
            else:
                result.skipped[name] = f"a {type(wrappers[name].module).__name__} without a quantized weight"
        with events.task("AdaRound", total=len(todo), unit="layers") as progress:
            for name in todo:
                result.layers.append(_round_layer(model, name, wrappers[name], batches, device, opts, generator))
                progress.advance(1, status=name)
    finally:
        model.train(was_training)
    return result


def _cache_inputs(model, wrapper, batches, device, max_samples: int) -> torch.Tensor:
    kept, count = [], 0
    for x in each_layer_input(model, wrapper, batches, device):
        kept.append(x[: max_samples - count])
        count += len(kept[-1])
        if count >= max_samples:
            break
    if not kept:
        raise ModelError(f"adaround: no calibration data reached {wrapper.layer_name!r}")
    return torch.cat(kept)  # (samples, ...) on the model's device


def _round_layer(model, name, wrapper, batches, device, opts: AdaRoundOptions, generator) -> AdaRoundLayer:
    layer, quantizer = wrapper.module, wrapper.param_quantizers["weight"]
    cache = _cache_inputs(model, wrapper, batches, device, opts.max_samples)
    weight = layer.weight.detach().to(torch.float32).clone()  # (O, I, *k) or (O, I): the float weights
    params = quantizer.params_for(weight)  # frozen ones, or the quantizer's own from W
    grid = _Rounding(quantizer.view(weight), params, quantizer.spec.format)
    with torch.no_grad():
        nearest = quantizer(layer.weight).detach().to(torch.float32).clone()  # round-to-nearest, as today
    v = grid.initial_v().requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=opts.lr)
    warm = int(opts.warmup * opts.iterations)
    with torch.enable_grad():
        for step in range(opts.iterations):
            idx = torch.randperm(len(cache), generator=generator)[: opts.batch_size].to(device)
            h = rectified_sigmoid(v)
            loss = _loss(layer, cache[idx], weight - grid.soft(h).reshape(weight.shape))
            if step >= warm:
                progress = (step - warm) / max(1, opts.iterations - warm)  # 0 -> 1
                beta = opts.beta_end + (opts.beta_start - opts.beta_end) * (1 - progress)
                loss = loss + opts.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        rounded = grid.hard(rectified_sigmoid(v) >= 0.5).reshape(weight.shape)
    loss_nearest = _full_loss(layer, cache, weight - nearest, opts.batch_size)
    loss_ada = _full_loss(layer, cache, weight - rounded, opts.batch_size)
    used = "adaround"
    if opts.keep_better and loss_ada > loss_nearest:
        rounded, used = nearest, "nearest"
    changed = int((rounded != nearest).sum())
    with torch.no_grad():
        layer.weight.copy_(rounded.to(layer.weight.dtype))  # in place: the quantizer's cache key moves
    quantizer.freeze(params)
    _check_reproduced(name, quantizer, layer.weight)
    return AdaRoundLayer(name, loss_nearest, loss_ada, used, changed, weight.numel(), len(cache))


def _check_reproduced(name: str, quantizer, weight: torch.Tensor) -> None:
    """The frozen quantizer must give back the written weights bit for bit (nearest rounding)."""
    if quantizer.spec.rounding != "nearest_even":
        return
    with torch.no_grad():
        again = quantizer(weight)
    if not torch.equal(again, weight):
        raise ModelError(f"adaround: {name!r}: the frozen quantizer does not reproduce the rounded weights")
