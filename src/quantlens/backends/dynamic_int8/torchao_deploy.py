"""Deploy a fake-quant model on PyTorch through torchao's dynamic INT8 linear, with quantlens's weights.

    deployment = torchao_model(qmodel)          # torchao Int8Tensor weights = quantlens's codes and scales
    TorchaoDynamicRunner(deployment).run(batch) # float32 logits (B, classes)
    deployment.codes_changed                    # per layer: codes where torchao's own choice would differ

The selected Linear layers of a float copy go through `quantize_` with
`Int8DynamicActivationInt8WeightConfig(act_mapping_type=ASYMMETRIC, granularity=PerRow(),
set_inductor_config=False)` (no process-wide inductor settings are changed); each resulting Int8Tensor is
then rebuilt around quantlens's int8 codes and per-channel scales (torchao's own symmetric weight scale is
amax / 127.5, quantlens's amax / 127, so torchao's codes differ), and checked to dequantize to the
simulated weight bit for bit. Activations are quantized by torchao on every call, per row (targets.py).

torchao's CPU matmul is `torch._int_mm` (int8 x int8 -> int32, exact). On x86 CPUs without VNNI or AMX
it runs a slow reference kernel (measured here, AVX2 EPYC, 1 thread: a 320x192 @ 192x576 product in
~40 ms against 0.9 ms in float32): the deployment is faithful there, not fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from quantlens.backends.base import BackendError, MissingPackageError, torch_threads
from quantlens.backends.dynamic_int8.layers import DynamicLinear, dynamic_linears
from quantlens.backends.pt2e.api import quiet_torchao
from quantlens.errors import describe
from quantlens.nn.convert import dequantize_model


def _torchao() -> Any:
    """torchao's dynamic INT8 entry points (imported quietly), or MissingPackageError with the install hint."""
    with quiet_torchao():
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
            from torchao.quantization.granularity import PerRow
            from torchao.quantization.quant_primitives import MappingType
            from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor
        except ImportError as error:
            raise MissingPackageError("PyTorch dynamic INT8 deployment needs the Python package 'torchao' (>= 0.18), "
                                      f"which cannot be imported ({describe(error)}); install it with: "
                                      "pip install 'quantlens[torchao]'") from error

    class _Api:
        pass

    api = _Api()
    api.Config, api.quantize_, api.PerRow, api.MappingType, api.Int8Tensor = (
        Int8DynamicActivationInt8WeightConfig, quantize_, PerRow, MappingType, Int8Tensor)
    return api


def torchao_available() -> bool:
    try:
        _torchao()
    except MissingPackageError:
        return False
    return True


@dataclass
class TorchaoDeployment:
    """The torchao model (eval, CPU) and what changed when quantlens's weights replaced torchao's own."""

    model: nn.Module
    layers: tuple[str, ...]
    codes_changed: dict[str, int] = field(default_factory=dict)  # layer -> codes torchao would have chosen otherwise
    weights: int = 0  # weight codes in all

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "codes_changed": dict(self.codes_changed), "weights": self.weights,
                "activation": "int8 asymmetric per row (token), dynamic"}


def _rebuilt(api: Any, own: Any, layer: DynamicLinear) -> Any:
    """An Int8Tensor like torchao's `own`, holding quantlens's codes (O, K) and scales (O, 1)."""
    scale = layer.scale.reshape(-1, 1).to(own.scale.dtype)
    zero_point = torch.zeros(scale.shape, dtype=torch.int8)
    tensor = api.Int8Tensor(layer.codes.clone(), scale, list(own.block_size), own.dtype, zero_point=zero_point,
                            act_quant_kwargs=own.act_quant_kwargs)
    simulated = layer.codes.to(torch.float32) * layer.scale[:, None]
    if not torch.equal(tensor.dequantize(), simulated):
        raise BackendError(f"{layer.name} weights: torchao's Int8Tensor does not dequantize to the simulated "
                           "weight; deployment refused")
    return tensor


def torchao_model(qmodel: nn.Module) -> TorchaoDeployment:
    """A float copy of `qmodel` whose quantized Linears run torchao's dynamic INT8 linear with quantlens's
    weight codes and scales. BackendError (one line) for layers the 'torchao' target cannot run."""
    layers = dynamic_linears(qmodel, "torchao")  # checks every layer first
    api = _torchao()
    model = dequantize_model(qmodel).eval().cpu()
    names = {layer.name for layer in layers}
    config = api.Config(act_mapping_type=api.MappingType.ASYMMETRIC, granularity=api.PerRow(),
                        set_inductor_config=False)
    with quiet_torchao(), torch.no_grad():
        api.quantize_(model, config, filter_fn=lambda module, fqn: fqn in names)
        changed = {}
        for layer in layers:
            module = model.get_submodule(layer.name)
            own = module.weight
            if not isinstance(own, api.Int8Tensor):
                raise BackendError(f"{layer.name}: torchao did not quantize this Linear (weight is "
                                   f"{type(own).__name__})")
            changed[layer.name] = int((own.qdata != layer.codes).sum())
            module.weight = nn.Parameter(_rebuilt(api, own, layer), requires_grad=False)
    weights = sum(layer.codes.numel() for layer in layers)
    return TorchaoDeployment(model, tuple(layer.name for layer in layers), changed, weights)


class TorchaoDynamicRunner:
    """`run(batch)` -> float32 logits (B, classes) numpy, on `threads` torch threads (restored after)."""

    def __init__(self, deployment: TorchaoDeployment, *, threads: int = 1) -> None:
        self.deployment = deployment
        self.threads = threads

    def run(self, batch) -> np.ndarray:
        x = torch.as_tensor(batch).detach().float().cpu()
        with torch_threads(self.threads), torch.no_grad(), quiet_torchao():
            return self.deployment.model(x).numpy()
