"""Operator categories of a profile: what ran in int8, in float, or converted between them.

Shared by the runners (to state the precision their compute operators really ran in, and which
operators stayed in float inside an INT8 model) and by `quantlens.bench.profile` (the tables).
"""

from __future__ import annotations

from collections.abc import Sequence

from quantlens.backends.base import OpTiming

CONVERSION_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "FakeQuantize", "Convert",
    "aten::quantize_per_tensor", "aten::quantize_per_channel", "aten::quantize_per_tensor_dynamic",
    "aten::dequantize", "aten::to", "aten::_to_copy",
})
# Torch bookkeeping that shows up as top-level operators but computes nothing of the model.
BOOKKEEPING_OPS = frozenset({"aten::item", "aten::_local_scalar_dense", "aten::empty", "aten::empty_like",
                             "aten::zeros", "aten::detach", "aten::alias", "aten::lift_fresh"})
INTEGER_DTYPES = frozenset({"uint8", "int8"})
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_COMPUTE_MARKERS = ("Conv", "Gemm", "MatMul", "FullyConnected", "conv", "linear", "addmm", "matmul", "mm")


def op_category(op: OpTiming) -> str:
    """"conversion" (quantize/dequantize/cast), "int8" (integer inputs or a quantized kernel),
    "float" (floating-point inputs), or "other" (bookkeeping, index-only ops)."""
    if op.op_type in CONVERSION_OPS:
        return "conversion"
    if op.op_type in BOOKKEEPING_OPS:
        return "other"
    if op.op_type.startswith("quantized::") or any(d in INTEGER_DTYPES for d in op.input_dtypes):
        return "int8"
    if op.input_dtypes and op.input_dtypes[0] in FLOAT_DTYPES:
        return "float"
    return "other"


def is_compute_op(op: OpTiming) -> bool:
    """Convolutions and matrix products: the operators whose precision decides the speed."""
    if op.op_type in CONVERSION_OPS:
        return False
    name = op.op_type.split("::")[-1]
    return any(marker in name for marker in _COMPUTE_MARKERS)


def compute_precision(ops: Sequence[OpTiming]) -> str | None:
    """The precision the compute operators spent most of their time in ("int8", "fp16", "bf16",
    "fp32"), or None when the profile holds no compute operator."""
    seconds: dict[str, float] = {}
    for op in ops:
        if not is_compute_op(op) or op_category(op) == "conversion":
            continue
        if op_category(op) == "int8":
            precision = "int8"
        elif op.input_dtypes and op.input_dtypes[0] == "float16":
            precision = "fp16"
        elif op.input_dtypes and op.input_dtypes[0] == "bfloat16":
            precision = "bf16"
        elif op.input_dtypes and op.input_dtypes[0] in FLOAT_DTYPES:
            precision = "fp32"
        else:
            continue
        seconds[precision] = seconds.get(precision, 0.0) + op.seconds
    return max(seconds, key=seconds.__getitem__) if seconds else None


def float_op_types(ops: Sequence[OpTiming]) -> tuple[str, ...]:
    """Operator types that ran on floating-point inputs, most time first."""
    seconds: dict[str, float] = {}
    for op in ops:
        if op_category(op) == "float":
            seconds[op.op_type] = seconds.get(op.op_type, 0.0) + op.seconds
    return tuple(sorted(seconds, key=lambda name: -seconds[name]))
