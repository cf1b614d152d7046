"""Compliance: does every quantized tensor hold only values its format can represent at its scale?

After a forward pass under `recording(model)`, each quantizer holds the tensor it produced and
the scales it used. A value v complies when re-quantizing it with those same scales gives v back
bit for bit: v = grid value x scale, exactly as the format and scale define it. An off-grid
value (a bug in a kernel, a layer that bypasses its quantizer, a value planted by a test) cannot
survive that round trip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from quantlens.nn.convert import quant_wrappers
from quantlens.scaling import dequantize, quantize


@dataclass(frozen=True)
class TensorCompliance:
    layer: str
    tensor: str  # "weight", "running_mean", "input 0", "output"
    format: str
    granularity: str
    elements: int
    violations: int
    max_deviation: float  # largest |v - requantized(v)| among violations (0 when compliant)
    nonfinite: int  # NaN/Inf values (reported, not counted as violations: NaN propagates by design)


@dataclass
class ComplianceReport:
    tensors: list[TensorCompliance] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(t.violations for t in self.tensors)

    @property
    def compliant(self) -> bool:
        return self.violations == 0 and bool(self.tensors)

    def by_layer(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.layer] = out.get(t.layer, 0) + t.violations
        return out

    def to_dict(self) -> dict:
        return {"compliant": self.compliant, "tensors_checked": len(self.tensors), "violations": self.violations,
                "layers_with_violations": sorted(k for k, v in self.by_layer().items() if v),
                "tensors": [asdict(t) for t in self.tensors]}

    @classmethod
    def from_dict(cls, data: dict) -> ComplianceReport:
        """Inverse of `to_dict` (the summary figures are derived from the tensors again)."""
        return cls([TensorCompliance(**t) for t in data["tensors"]])


def check_tensor(layer: str, tensor: str, value: torch.Tensor, spec, params) -> TensorCompliance:
    fmt = spec.format
    back = dequantize(quantize(value, fmt, params), fmt, params)
    finite = torch.isfinite(value)
    mismatch = (back != value) & finite
    count = int(mismatch.sum())
    deviation = float((back - value)[mismatch].abs().max()) if count else 0.0
    return TensorCompliance(layer, tensor, fmt.name, repr(params.granularity), value.numel(), count, deviation,
                            int((~finite).sum()))


def check_compliance(model: nn.Module) -> ComplianceReport:
    """Check every tensor recorded by the model's quantizers during the last recorded forward pass."""
    report = ComplianceReport()
    for name, wrapper in quant_wrappers(model):
        recorded = [(pname, q) for pname, q in wrapper.param_quantizers.items()]
        recorded += [(q.where.removeprefix(f"{name} "), q) for q in wrapper.activation_quantizers()]
        for tensor_name, quantizer in recorded:
            if quantizer.record.last is None:
                continue
            value, params = quantizer.record.last
            report.tensors.append(check_tensor(name, tensor_name, value, quantizer.spec, params))
    return report
