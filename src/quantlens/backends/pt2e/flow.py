"""The pt2e flow with quantlens's params: float model -> torch.export -> prepare_pt2e (X86InductorQuantizer) ->
fixed observers -> convert_pt2e -> checks -> torch.compile (inductor).

The float model is the network the simulation computes: each QuantWrapper's module with its fake-quantized
weight, activations unquantized (pt2e quantizes them). It is exported with a dynamic batch axis and prepared with
`X86InductorQuantizer` (static, u8 activations, s8 per-channel weights). Instead of calibrating, every observer is
replaced by one holding quantlens's scale and zero point (observers.py); `convert_pt2e` writes quantize/dequantize
nodes from them and folds each weight into int8 codes, which are checked equal to quantlens's (verify.py).
Biases stay float32 in both the simulation and the deployment.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from quantlens.backends.base import BackendError
from quantlens.backends.pt2e.api import load_torchao, quiet_torchao
from quantlens.backends.pt2e.channel_pad import pad_single_channel_convs
from quantlens.backends.pt2e.deployment import Pt2eDeployment
from quantlens.backends.pt2e.graph import prune_unused_attributes
from quantlens.backends.pt2e.inductor import compile_graph, warmup_batch
from quantlens.backends.pt2e.observers import override_observers
from quantlens.backends.pt2e.params import layer_params
from quantlens.backends.pt2e.validate import validate
from quantlens.backends.pt2e.verify import saturation_risk, verify_converted
from quantlens.errors import describe
from quantlens.nn.wrapper import QuantWrapper


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def float_model(qmodel: nn.Module) -> nn.Module:
    """The float network the simulation computes: each QuantWrapper replaced by its module (same name) holding
    the fake-quantized weight; activations unquantized (pt2e quantizes them)."""
    target = copy.deepcopy(qmodel).eval().cpu()
    for name, wrapper in [(n, m) for n, m in target.named_modules() if isinstance(m, QuantWrapper)]:
        module = wrapper.module
        with torch.no_grad():
            for pname, pq in wrapper.param_quantizers.items():
                getattr(module, pname).copy_(pq(getattr(module, pname)).detach())
        _set_submodule(target, name, module)
    return target


def export_graph(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """`torch.export` with a dynamic batch axis; BackendError (one line) when it fails."""
    try:
        program = torch.export.export(model, (warmup_batch(example),),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as error:  # export raises many types; each becomes one line
        raise BackendError(f"pt2e deployment: torch.export failed: {describe(error)}") from error
    return program.module()


def pt2e_model(qmodel: nn.Module, example_input: torch.Tensor, *, compile: bool = True,
               threads: int | None = None) -> Pt2eDeployment:
    """Deploy a calibrated fake-quant model (quantize_model + calibrate, BatchNorm folded) on PyTorch x86 INT8
    through torchao's pt2e flow and inductor, with quantlens's scales and zero points (never re-calibrated).

    example_input: float32 (B, C, H, W); the deployment accepts any batch size. compile=False leaves the converted
    graph module uncompiled (reference quantize/dequantize in float: for inspection or saving). threads: torch
    threads for compiling and each call (None: the process's setting). BackendError (one line) for formats
    PyTorch x86 cannot run; MissingPackageError when torchao is absent."""
    wrappers = {n: m for n, m in qmodel.named_modules() if isinstance(m, QuantWrapper)}
    validate(list(wrappers.items()))
    api = load_torchao()
    params = layer_params(wrappers)
    example_input = example_input.detach().float().cpu()
    start = time.perf_counter()
    with quiet_torchao():
        gm = export_graph(float_model(qmodel), example_input)
        padded = pad_single_channel_convs(gm, wrappers)
        quantizer = api.x86.X86InductorQuantizer()
        quantizer.set_global(api.x86.get_default_x86_inductor_quantization_config())
        try:
            prepared = api.prepare_pt2e(gm, quantizer)
        except Exception as error:
            raise BackendError(f"pt2e deployment: prepare_pt2e failed: {describe(error)}") from error
        tensors, notes = override_observers(api, prepared, wrappers, params)
        try:
            converted = api.convert_pt2e(prepared)
        except Exception as error:
            raise BackendError(f"pt2e deployment: convert_pt2e failed: {describe(error)}") from error
    prune_unused_attributes(converted)  # the float weights convert_pt2e folded into int8 constants
    export_s = time.perf_counter() - start
    weights = verify_converted(converted, wrappers, tensors, params)
    notes.extend(f"{path}: its single input channel runs beside an all-zero one (zero weights: the same int32 "
                 "sums) because inductor's dynamic-batch INT8 convolution mis-assumes the layout of one-channel "
                 "inputs" for path in padded)
    notes.extend(saturation_risk(wrappers))
    deployment = Pt2eDeployment(compiled=converted, graph_module=converted, tensors=tensors, weights=weights,
                                notes=notes, padded_inputs=padded, export_s=export_s, threads=threads)
    if compile:
        compiled = compile_graph(converted, example_input, threads)
        deployment.compiled, deployment.compile_s = compiled.forward, compiled.compile_s
        deployment.int8_kernels = compiled.int8_kernels
        if not compiled.int8_kernels:
            deployment.notes.append("inductor fused no INT8 convolution or linear (no qconv/qlinear lowering)")
    return deployment
