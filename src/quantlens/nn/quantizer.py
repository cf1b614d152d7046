"""Tensor quantizers: thin modules that hold state (ranges, cached weights) and call scaling/.

`ActivationQuantizer` fake-quantizes a layer's input or output on every call, with ranges from
calibration (static) or from the batch (dynamic). `ParamQuantizer` fake-quantizes a parameter
once and caches the result until the parameter changes. Neither holds any maths: that lives in
`quantlens.scaling` and `quantlens.formats`.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.errors import QuantlensError
from quantlens.formats import BlockFormat, IntFormat
from quantlens.nn.spec import TensorSpec
from quantlens.observers import OBSERVERS, Observer
from quantlens.scaling import QuantParams, compute_qparams, fake_quantize, fake_quantize_ste


def channel_axis(x: torch.Tensor, axis: int | None) -> int:
    """The axis a per-channel/per-block scale runs along: given, or 1 for (N, C, H, W), else the last."""
    if axis is not None:
        return axis
    return 1 if x.ndim == 4 else -1


def _fake_quant(x: torch.Tensor, spec: TensorSpec, params: QuantParams) -> torch.Tensor:
    """Fake-quantize with the spec's rounding and overflow; straight-through gradients when x needs them."""
    if x.requires_grad and torch.is_grad_enabled():
        return fake_quantize_ste(x, spec.format, params, rounding=spec.rounding, saturate=spec.saturate)
    return fake_quantize(x, spec.format, params, rounding=spec.rounding, saturate=spec.saturate, divide=spec.divide)


def _qparams(x: torch.Tensor, spec: TensorSpec, granularity, **stats) -> QuantParams:
    """compute_qparams with the spec's scale kind and MX shared-scale rule."""
    return compute_qparams(x, spec.format, granularity, scale_kind=spec.scale_kind, mx_rule=spec.mx_rule, **stats)


def make_observer(spec: TensorSpec, axis: int | None) -> Observer:
    """The spec's registered observer for one tensor, grouped along `axis` (None: one group)."""
    return OBSERVERS.get(spec.observer)(spec.format, axis, **spec.options())


def range_stats(spec: TensorSpec, lo: torch.Tensor, hi: torch.Tensor) -> dict[str, torch.Tensor]:
    """An observed (min, max) as compute_qparams statistics: min/max for asymmetric integers, else amax."""
    if isinstance(spec.format, IntFormat) and not spec.format.symmetric:
        return {"min_val": lo, "max_val": hi}
    return {"amax": torch.maximum(-lo, hi)}


class _Recording:
    """The last quantized tensor and the parameters used, kept only while `recording` is on."""

    def __init__(self) -> None:
        self.recording = False
        self.last: tuple[torch.Tensor, QuantParams] | None = None

    def keep(self, y: torch.Tensor, params: QuantParams) -> None:
        if self.recording:
            self.last = (y.detach(), params)


class ActivationQuantizer(nn.Module):
    """Fake-quantizes one tensor flowing through a layer (an input or the output).

    Static ranges come from a min/max observer during calibration; per-tensor and per-channel
    scales are then fixed (their shape does not depend on the batch size). Block scales follow
    the data and are computed on every call; NVFP4 keeps its per-tensor scale from calibration.
    """

    def __init__(self, spec: TensorSpec, axis: int | None, where: str) -> None:
        super().__init__()
        self.spec = spec
        self.axis = axis
        self.where = where  # e.g. "layer1.0.conv1 input 0", for messages and reports
        self.calibrating = False
        self.observer: Observer | None = None
        self.params: QuantParams | None = None  # fixed scales (static, non-block)
        self.tensor_amax: torch.Tensor | None = None  # NVFP4's calibrated per-tensor maximum
        self.record = _Recording()

    @property
    def uses_static_range(self) -> bool:
        fmt = self.spec.format
        if self.spec.mode == "block":
            return self.spec.static and isinstance(fmt, BlockFormat) and fmt.rule == "nvfp4"
        return self.spec.static

    def start_calibration(self) -> None:
        self.calibrating = True
        self.observer, self.params, self.tensor_amax = None, None, None

    def finish_calibration(self) -> None:
        self.calibrating = False
        if not self.uses_static_range:
            return
        if self.observer is None or not self.observer.calibrated:
            raise QuantlensError(f"{self.where}: no calibration data reached this layer")
        lo, hi = self.observer.range()
        fmt = self.spec.format
        if isinstance(fmt, BlockFormat):
            self.tensor_amax = torch.maximum(-lo, hi).max()
            return
        granularity = self.spec.granularity(channel_axis(self._example, self.axis))
        self.params = _qparams(self._example, self.spec, granularity, **range_stats(self.spec, lo, hi))

    def fix(self, params: QuantParams) -> None:
        """Use these scales from now on (e.g. read back from an export, or chosen by a search)."""
        self.params = params

    def _observe(self, x: torch.Tensor) -> None:
        if self.observer is None:
            axis = channel_axis(x, self.axis) if self.spec.mode == "channel" else None
            self.observer = make_observer(self.spec, axis)
        self.observer.update(x)
        # one sample's shape; a 0-d operand (a scalar constant of Mul/Add in foreign graphs) stays 0-d
        self._example = torch.zeros((1, *x.shape[1:]) if x.ndim else (), dtype=torch.float32, device=x.device)

    def _params_for(self, x: torch.Tensor) -> QuantParams:
        if self.params is not None:  # calibrated, fixed scales
            return self.params
        spec = self.spec
        granularity = spec.granularity(channel_axis(x, self.axis))
        if not self.uses_static_range:
            return _qparams(x, spec, granularity)
        if self.tensor_amax is not None:  # NVFP4: block scales from x, tensor scale from calibration
            return _qparams(x, spec, granularity, amax=self.tensor_amax)
        raise QuantlensError(f"{self.where}: static ranges need calibration first (calibrate the model)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            if self.uses_static_range:
                self._observe(x)
            return x
        params = self._params_for(x)
        y = _fake_quant(x, self.spec, params)
        self.record.keep(y, params)
        return y

    def extra_repr(self) -> str:
        return f"{self.spec.describe()}, {'static' if self.uses_static_range else 'dynamic'}"


class ParamQuantizer(nn.Module):
    """Fake-quantizes one parameter or buffer, viewed as (rows, -1) when `matrix` (conv/linear weights).

    Scales come from the parameter's own values through the spec's observer ('max' by default;
    'mse' searches a clipping range per channel), unless `freeze` fixed them (AdaRound does, after
    choosing each weight's rounding). The result is cached and recomputed only when the parameter
    changes (its storage or its version counter: in-place updates by optimisers and load_state_dict
    move it; writes through `.data` do not, by torch's design), so weights are quantized once, not
    on every forward. While training with gradients the straight-through estimator is used and
    nothing is cached.
    """

    def __init__(self, spec: TensorSpec, axis: int, where: str, matrix: bool) -> None:
        super().__init__()
        self.spec = spec
        self.axis = axis
        self.where = where
        self.matrix = matrix  # (O, I, kH, kW) -> (O, I*kH*kW): blocks run along the whole fan-in
        self.record = _Recording()
        self.frozen: QuantParams | None = None
        self._key: tuple | None = None
        self._cached: torch.Tensor | None = None

    def view(self, p: torch.Tensor) -> torch.Tensor:
        """The parameter as the quantizer sees it: (O, fan_in) for conv/linear weights."""
        return p.reshape(p.shape[0], -1) if self.matrix and p.ndim > 2 else p

    def params_for(self, p: torch.Tensor) -> QuantParams:
        """The scales this quantizer uses for parameter `p` (frozen ones, or from p's values)."""
        if self.frozen is not None:
            return self.frozen
        view = self.view(p).detach()
        granularity = self.spec.granularity(self.axis)
        if self.spec.observer in ("max", "dynamic") or self.spec.mode == "block":
            return _qparams(view, self.spec, granularity)
        axis = self.axis if self.spec.mode == "channel" else None
        observer = make_observer(self.spec, axis)
        observer.update(view.float())
        return _qparams(view, self.spec, granularity, **range_stats(self.spec, *observer.range()))

    def freeze(self, params: QuantParams | None) -> None:
        """Fix the scales (None: follow the parameter's values again); the cache is dropped."""
        self.frozen, self._key, self._cached = params, None, None

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        view = self.view(p)
        if p.requires_grad and torch.is_grad_enabled():
            params = self.params_for(p)
            quantized = _fake_quant(view, self.spec, params)
            self.record.keep(quantized, params)
            return quantized.reshape(p.shape)
        key = (p.data_ptr(), p._version, tuple(p.shape))
        if key != self._key:
            params = self.params_for(p)
            quantized = _fake_quant(view, self.spec, params)
            self._cached, self._key, self._params = quantized.reshape(p.shape), key, params
        if self.record.recording:
            self.record.keep(self._cached.reshape(view.shape), self._params)
        return self._cached

    def extra_repr(self) -> str:
        return f"{self.spec.describe()}, axis={self.axis}{', matrix view' if self.matrix else ''}"
