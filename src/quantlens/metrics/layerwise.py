"""Layer-wise error of a quantized model against its float original, over a few batches.

Each layer's output in the quantized model (errors of upstream layers included, as deployed) is
compared with the same layer's output in the float model on the same inputs: MSE, cosine
similarity, SQNR in dB (10 log10 of signal power over error power) and the largest absolute error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from quantlens.devices import module_device


@dataclass
class _Accumulator:
    elements: int = 0
    err_sq: float = 0.0
    ref_sq: float = 0.0
    test_sq: float = 0.0
    dot: float = 0.0
    max_abs: float = 0.0

    def add(self, ref: torch.Tensor, test: torch.Tensor) -> None:
        ref, test = ref.detach().double().flatten(), test.detach().double().flatten()
        err = test - ref
        self.elements += ref.numel()
        self.err_sq += float(err.square().sum())
        self.ref_sq += float(ref.square().sum())
        self.test_sq += float(test.square().sum())
        self.dot += float((ref * test).sum())
        self.max_abs = max(self.max_abs, float(err.abs().max()) if err.numel() else 0.0)


@dataclass(frozen=True)
class LayerError:
    layer: str
    type: str
    mse: float
    cosine: float
    sqnr_db: float
    max_abs_error: float
    elements: int


def _first_tensor(output) -> torch.Tensor | None:
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    return None


@torch.inference_mode()
def layerwise_errors(float_model: nn.Module, quant_model: nn.Module, layers: dict[str, str],
                     batches: Iterable[torch.Tensor]) -> list[LayerError]:
    """Errors per layer (`layers`: name -> type name), ranked worst (lowest SQNR) first."""
    captured: dict[str, torch.Tensor] = {}
    acc = {name: _Accumulator() for name in layers}

    def keep(name):
        def hook(_module, _inputs, output):
            tensor = _first_tensor(output)
            if tensor is not None:
                captured[name] = tensor
        return hook

    def compare(name):
        def hook(_module, _inputs, output):
            tensor = _first_tensor(output)
            if tensor is not None and name in captured and captured[name].shape == tensor.shape:
                acc[name].add(captured[name], tensor)
        return hook

    handles = [float_model.get_submodule(n).register_forward_hook(keep(n)) for n in layers]
    handles += [quant_model.get_submodule(n).register_forward_hook(compare(n)) for n in layers]
    modes = float_model.training, quant_model.training
    float_model.eval()
    quant_model.eval()
    float_device, quant_device = module_device(float_model), module_device(quant_model)
    try:
        for x in batches:  # each model on its own device
            captured.clear()
            float_model(x.to(float_device))
            quant_model(x.to(quant_device))
    finally:
        for h in handles:
            h.remove()
        float_model.train(modes[0])
        quant_model.train(modes[1])
    results = []
    for name, a in acc.items():
        if not a.elements:
            continue
        mse = a.err_sq / a.elements
        cosine = a.dot / math.sqrt(a.ref_sq * a.test_sq) if a.ref_sq > 0 and a.test_sq > 0 else float("nan")
        sqnr = 10 * math.log10(a.ref_sq / a.err_sq) if a.err_sq > 0 else math.inf
        results.append(LayerError(name, layers[name], mse, cosine, sqnr, a.max_abs, a.elements))
    return sorted(results, key=lambda r: r.sqnr_db)


def layerwise_table(errors: list[LayerError], limit: int | None = None) -> str:
    """A ranked plain-text table (worst layer first)."""
    rows = errors if limit is None else errors[:limit]
    width = max([len("layer"), *(len(e.layer) for e in rows)])
    lines = [f"{'layer':<{width}}  {'type':<18} {'SQNR dB':>9} {'cosine':>9} {'MSE':>11} {'max |err|':>10}"]
    for e in rows:
        lines.append(f"{e.layer:<{width}}  {e.type:<18} {e.sqnr_db:>9.2f} {e.cosine:>9.5f} {e.mse:>11.3e} "
                     f"{e.max_abs_error:>10.4f}")
    return "\n".join(lines)


def layerwise_record(errors: list[LayerError]) -> list[dict]:
    return [asdict(e) for e in errors]


def layerwise_from_record(record: list[dict]) -> list[LayerError]:
    """Inverse of `layerwise_record` (`layerwise.json` read back)."""
    return [LayerError(**row) for row in record]
