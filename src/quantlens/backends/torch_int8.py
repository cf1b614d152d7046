"""PyTorch INT8 on x86: FX graph-mode static post-training quantization.

`prepare_fx` traces the model and inserts observers after the x86 default QConfigMapping
(per-channel symmetric int8 weights; uint8 activations with `reduce_range`, i.e. 7 bits, observed
by HistogramObserver), the calibration batches run through it, and `convert_fx` swaps in
quantized modules (fbgemm / oneDNN kernels). No QuantStub is needed: FX inserts the quantize /
dequantize at the graph's edges. Operations without a quantized kernel run in float between a
dequantize and a quantize; `float_islands` lists them (the option-A shortcut's slice + pad in
the CIFAR ResNets is one).

The quantized engine is process-wide state: it is set to "x86" only for the duration of the
preparation and of each call, and restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import fx, nn

from quantlens.backends.base import (
    Backend,
    BackendError,
    Runner,
    RunnerInfo,
    Target,
    int8_isa_note,
    register_backend,
    save_state_dict,
    state_dict_bytes,
)
from quantlens.backends.torch_eager import TorchEagerRunner

ENGINE = "x86"
_QUANTIZE_FUNCTIONS = (torch.quantize_per_tensor, torch.quantize_per_channel, torch.quantize_per_tensor_dynamic)


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Set torch.backends.quantized.engine for the block, restore the previous engine after it."""
    previous = torch.backends.quantized.engine
    if previous == engine:
        yield
        return
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def _is_dequantize(node: fx.Node) -> bool:
    return ((node.op == "call_method" and node.target == "dequantize")
            or (node.op == "call_function" and node.target is torch.dequantize))


def _is_quantize(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in _QUANTIZE_FUNCTIONS


def _op_label(module: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(module.get_submodule(str(node.target))).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def float_islands(module: fx.GraphModule) -> list[str]:
    """Operation names (module class or function) that run on dequantized, float tensors inside
    a converted model: everything downstream of a dequantize up to the next quantize."""
    labels: list[str] = []
    for node in module.graph.nodes:
        if not _is_dequantize(node):
            continue
        pending = list(node.users)
        seen: set[fx.Node] = set()
        while pending:
            user = pending.pop()
            if user in seen or _is_quantize(user) or user.op == "output":
                continue
            seen.add(user)
            label = _op_label(module, user)
            if label not in labels:
                labels.append(label)
            pending.extend(user.users)
    return labels


class TorchInt8Runner(TorchEagerRunner):
    """A converted FX model, run with the x86 quantized engine selected for each call."""

    def run_raw(self, batch: torch.Tensor) -> torch.Tensor:
        with quantized_engine(ENGINE):
            return super().run_raw(batch)


class TorchInt8Backend(Backend):
    def __init__(self) -> None:
        super().__init__("torch-int8", family="torch", precision="int8",
                         description="PyTorch INT8 (x86 engine), FX static post-training quantization")

    def _hardware_available(self, target: Target) -> tuple[bool, str]:
        if target.device != "cpu":
            return False, f"{self.name}: torch's x86 INT8 kernels run on the CPU only (device {target.device!r})"
        if ENGINE not in torch.backends.quantized.supported_engines:
            return False, (f"{self.name}: this torch build has no {ENGINE!r} quantized engine "
                           f"(engines: {', '.join(torch.backends.quantized.supported_engines)})")
        return True, ""

    def _prepare(self, model: nn.Module, example_input: torch.Tensor, calibration_batches: list[torch.Tensor],
                 work_dir: Path, target: Target) -> Runner:
        if not calibration_batches:
            raise BackendError(f"{self.name}: static INT8 needs at least one calibration batch")
        with warnings.catch_warnings():
            # torch.ao.quantization warns on import and use that it is deprecated in favour of torchao,
            # and that observers' reduce_range and quantized tensors will go: true, and not news here.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            with quantized_engine(ENGINE), torch.no_grad():
                module = copy.deepcopy(model).eval().cpu()
                try:
                    prepared = prepare_fx(module, get_default_qconfig_mapping(ENGINE), (example_input[:1],))
                except fx.proxy.TraceError as error:
                    raise BackendError(f"{self.name}: torch.fx cannot trace this model ({error}); "
                                       f"FX quantization needs a symbolically traceable forward") from error
                for batch in calibration_batches:
                    prepared(batch.float())
                converted = convert_fx(prepared)
        float_ops = tuple(float_islands(converted))
        quantized_layers = [name for name, layer in converted.named_modules()
                            if type(layer).__module__.startswith("torch.ao.nn.quantized")]
        images = sum(int(batch.shape[0]) for batch in calibration_batches)
        notes = [f"x86 engine, FX static PTQ: per-channel int8 weights, 7-bit uint8 activations "
                 f"(reduce_range), HistogramObserver; calibrated on {images} images "
                 f"({len(calibration_batches)} batches)"]
        if float_ops:
            notes.append(f"run in float between dequantize and quantize: {', '.join(float_ops)}")
        if not quantized_layers:
            notes.append("convert_fx produced no quantized layers: the model ran in FP32")
        isa_note = int8_isa_note()
        if isa_note:
            notes.append(isa_note)
        weights_file = save_state_dict(converted, work_dir / f"{self.name}.pt")
        info = RunnerInfo(backend=self.name, requested_precision="int8",
                          actual_precision="int8" if quantized_layers else "fp32", device="cpu",
                          provider=f"torch quantized ({ENGINE} engine)", threads=target.threads,
                          notes=tuple(notes), float_ops=float_ops, model_files=(str(weights_file),),
                          parameter_bytes=state_dict_bytes(converted))
        runner = TorchInt8Runner(converted, info, device=torch.device("cpu"), autocast_dtype=None,
                                 channels_last=False, splittable=False)
        runner.run(example_input[:2])  # fail here, not in the middle of a timed run
        return runner


register_backend(TorchInt8Backend())
