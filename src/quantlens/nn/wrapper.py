"""`QuantWrapper`: one thin module that fake-quantizes any registered layer's tensors.

It keeps the float module untouched (as `.module`) and adds quantizers around it: inputs before
the call, parameters swapped in for the call, the output after it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from quantlens.nn.quantizer import ActivationQuantizer, ParamQuantizer
from quantlens.nn.registry import LayerKind
from quantlens.nn.spec import LayerPlan


class QuantWrapper(nn.Module):
    def __init__(self, module: nn.Module, kind: LayerKind, plan: LayerPlan, name: str) -> None:
        super().__init__()
        self.module = module
        self.kind = kind
        self.plan = plan
        self.layer_name = name
        self.input_quantizers = nn.ModuleList(
            ActivationQuantizer(plan.inputs, axis, f"{name} input {i}") for i, axis in enumerate(kind.input_axes)
        ) if plan.inputs is not None else nn.ModuleList()
        self.output_quantizer = (ActivationQuantizer(plan.outputs, None, f"{name} output")
                                 if plan.outputs is not None else None)
        params: dict[str, ParamQuantizer] = {}
        for role_spec, names, matrix in ((plan.weights, kind.weight_params, True),
                                         (plan.norm, kind.norm_params, False)):
            if role_spec is None:
                continue
            for p in names:
                if getattr(module, p, None) is not None:
                    axis = 1 if matrix and role_spec.mode == "block" else 0
                    params[p] = ParamQuantizer(role_spec, axis, f"{name}.{p}", matrix)
        self.param_quantizers = nn.ModuleDict(params)

    def activation_quantizers(self) -> list[ActivationQuantizer]:
        return [*self.input_quantizers, *([self.output_quantizer] if self.output_quantizer is not None else [])]

    def forward(self, *args, **kwargs):
        if self.input_quantizers:
            args = tuple(self.input_quantizers[i](a) if i < len(self.input_quantizers) and torch.is_tensor(a) else a
                         for i, a in enumerate(args))
        if self.param_quantizers:
            params = {n: q(getattr(self.module, n)) for n, q in self.param_quantizers.items()}
            if self.kind.call is not None and not kwargs:
                out = self.kind.call(self.module, params, *args)
            else:
                out = functional_call(self.module, params, args, kwargs)
        else:
            out = self.module(*args, **kwargs)
        return self.output_quantizer(out) if self.output_quantizer is not None else out

    def extra_repr(self) -> str:
        return f"layer={self.layer_name!r}, kind={self.kind.name}"
