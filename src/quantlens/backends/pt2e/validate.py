"""What PyTorch x86 INT8 (oneDNN through inductor) can run, checked before anything is traced.

It runs u8 activations with one scale per tensor and s8 weights with zero point 0, per tensor or per output
channel, all with static (calibrated) ranges and round-to-nearest-even. quantlens's int8 activation formats map
onto u8 codes (signed: zero point + 128); weights of <= 8 bits that are signed and symmetric are s8 codes as they
are. Anything else is refused with a one-line BackendError naming the quantizer.
"""

from __future__ import annotations

from torch import nn

from quantlens.backends.base import BackendError, check_integer_kernel_spec
from quantlens.formats import IntFormat
from quantlens.nn.wrapper import QuantWrapper
from quantlens.scaling import PerChannel, PerTensor

DENSE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers whose weight pt2e quantizes


def simulation_only(where: str, what: str) -> BackendError:
    return BackendError(f"{where}: {what} is simulation only on PyTorch x86 (pt2e INT8 supports 8-bit integer "
                        "activations and <= 8-bit signed symmetric integer weights)")


def activation_offset(fmt, where: str) -> int:
    """The offset from quantlens's codes to u8 codes: 0 for unsigned 8-bit, 128 for signed 8-bit."""
    if isinstance(fmt, IntFormat) and fmt.bits == 8:
        return 128 if fmt.signed else 0
    raise simulation_only(where, getattr(fmt, "name", str(fmt)))


def check_weight_format(fmt, where: str) -> None:
    if isinstance(fmt, IntFormat) and fmt.bits <= 8 and fmt.signed and fmt.symmetric:
        return
    name = getattr(fmt, "name", str(fmt))
    if isinstance(fmt, IntFormat) and fmt.bits <= 8:
        name += " (asymmetric or unsigned: x86 INT8 weights are s8 with zero point 0)"
    raise simulation_only(where, name)


def _check_spec(spec, where: str) -> None:
    check_integer_kernel_spec(spec, where, "PyTorch x86 INT8 form", "PyTorch x86 quantize")


def _check_calibrated(q, where: str) -> None:
    if q.params is None or not q.spec.static:
        raise BackendError(f"{where}: no calibrated static range (pt2e deployment uses fixed scales: calibrate the "
                           "model; dynamic ranges are simulation only)")


def validate(wrappers: list[tuple[str, QuantWrapper]]) -> None:
    """One-line BackendError for the first quantizer PyTorch x86 INT8 cannot run (formats first, then
    calibration, so a format problem is named even on an uncalibrated model)."""
    if not wrappers:
        raise BackendError("pt2e deployment needs a quantized model (quantlens.nn.quantize_model + calibrate); "
                           "this one has no quantized layer")
    for name, wrapper in wrappers:
        for i, q in enumerate(wrapper.input_quantizers):
            activation_offset(q.spec.format, f"{name} input {i}")
            _check_spec(q.spec, f"{name} input {i}")
        if wrapper.output_quantizer is not None:
            activation_offset(wrapper.output_quantizer.spec.format, f"{name} output")
            _check_spec(wrapper.output_quantizer.spec, f"{name} output")
        for pname, pq in wrapper.param_quantizers.items():
            where = f"{name} {pname}"
            if pname != "weight" or not isinstance(wrapper.module, DENSE):
                raise BackendError(f"{where}: quantized {type(wrapper.module).__name__}.{pname} has no PyTorch x86 "
                                   "INT8 form (fold BatchNorm into the convolution: pass fold_bn)")
            check_weight_format(pq.spec.format, where)
            _check_spec(pq.spec, where)
    for name, wrapper in wrappers:
        for i, q in enumerate(wrapper.input_quantizers):
            _check_calibrated(q, f"{name} input {i}")
        if wrapper.output_quantizer is not None:
            _check_calibrated(wrapper.output_quantizer, f"{name} output")
        for pq in wrapper.param_quantizers.values():
            where = f"{name} weight"
            params = pq.params_for(wrapper.module.weight)
            if not bool((params.zero_point == 0).all()):
                raise simulation_only(where, f"{pq.spec.format.name} with a non-zero zero point")
            if not isinstance(params.granularity, PerTensor) and not (
                    isinstance(params.granularity, PerChannel) and params.granularity.axis in (0, -2)):
                raise BackendError(f"{where}: weight scales along axis {params.granularity.axis} have no x86 INT8 "
                                   "form (per output channel, axis 0, only)")
