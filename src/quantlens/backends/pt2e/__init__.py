"""quantlens's calibrated INT8 model on PyTorch x86 through torchao's pt2e flow and inductor.

    deployment = pt2e_model(qmodel, example_input)        # never re-calibrates; compiled INT8 oneDNN kernels
    logits = deployment.run(batch)                        # (B, classes) float32 tensor
    deployment.tensors                                    # (tensor, scale, zero_point, source) per quantized tensor
    check_pt2e(deployment, qmodel, batches)               # top-1 / logit agreement with the simulation

    runner = Pt2eRunner(qmodel, example, "m.int8.pt2")    # as a deployment runtime: the saved file is what runs
    runner.run(batch) -> numpy logits; runner.size_bytes, runner.sha256

Files, one job each: api (torchao imported quietly), validate (what x86 INT8 can run), params (quantlens scales
-> fixed pt2e observers), observers (placing them on pt2e's prepared graph), channel_pad (the one-channel
convolution inductor cannot compile with a dynamic batch), verify (the converted graph holds quantlens's codes),
flow (export -> prepare -> convert -> compile), inductor (compile settings), deployment (the result), artefact
(.pt2 file), runner (deployment runtime), agreement (vs the simulation).

Formats PyTorch x86 cannot run are refused with a one-line BackendError: anything but 8-bit integer activations
and <= 8-bit signed symmetric integer weights, per-block scales, dynamic ranges, stochastic rounding, quantized
normalisation parameters. torchao's import-time and torch.ao deprecation warnings (and its log lines about
CUDA-only libraries) are kept out of the user's output; process-wide settings are restored.
"""

from quantlens.backends.pt2e.agreement import Pt2eAgreement, check_pt2e
from quantlens.backends.pt2e.api import SKIP_SO_ENV, load_torchao, quiet_torchao, torchao_available
from quantlens.backends.pt2e.artefact import Pt2eFile, load_pt2e, save_pt2e
from quantlens.backends.pt2e.deployment import Pt2eDeployment
from quantlens.backends.pt2e.flow import float_model, pt2e_model
from quantlens.backends.pt2e.graph import quantize_nodes, weight_codes
from quantlens.backends.pt2e.observers import QuantizedTensor
from quantlens.backends.pt2e.runner import Pt2eRunner

__all__ = [
    "SKIP_SO_ENV",
    "Pt2eAgreement",
    "Pt2eDeployment",
    "Pt2eFile",
    "Pt2eRunner",
    "QuantizedTensor",
    "check_pt2e",
    "float_model",
    "load_pt2e",
    "load_torchao",
    "pt2e_model",
    "quantize_nodes",
    "quiet_torchao",
    "save_pt2e",
    "torchao_available",
    "weight_codes",
]
