"""What a classifier's outputs are -- logits, probabilities or log-probabilities -- and how each becomes
probabilities without a second softmax.

Every consumer of quantlens's models (evaluation, simulation, the deployed runtimes, the benchmark's
post-processing) applies a softmax to what the model returns. That is right for logits and for
log-probabilities (softmax(log p) = p), and wrong for probabilities (softmax(p) flattens them: a
model confident at 0.79 reads as 0.20). So a model that outputs probabilities is adapted once, when
it is set up: `adapt_outputs` makes it return log(p) from inside its own forward, where the change
survives every copy, fx trace, quantization wrapper and export that follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import fx, nn

OutputKind = Literal["logits", "probabilities", "log_probabilities"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities", "log_probabilities")

# Probabilities are read as such when every value lies in [0, 1] and every row sums to 1 within these
# tolerances (float32 softmax rows sum to 1 within ~1e-6; 1e-3 leaves room for FP16 models).
RANGE_TOLERANCE = 1e-6
SUM_TOLERANCE = 1e-3
# log(0) is -inf; probabilities that underflowed to 0 become log(smallest normal float32) = -87.3
# instead, which a softmax turns back into 0 (and which fake-quantization and exports can carry).
_TINY = torch.finfo(torch.float32).tiny
OUTPUT_ATTRIBUTE = "quantlens_output_kind"  # what a module's forward returns, when it says


@dataclass(frozen=True)
class OutputInfo:
    """What the model returned before any adaptation (`kind`), how that was decided (`origin`), and
    what quantlens did about it (`handling`); written into the run record."""

    kind: str
    origin: str
    handling: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "origin": self.origin, "handling": self.handling}

    def describe(self) -> str:
        """One line for the terminal: 'returns probabilities (detected: ...); handling'."""
        return f"returns {self.kind.replace('_', '-')} ({self.origin}); {self.handling}"


def detect_output_kind(outputs: torch.Tensor) -> tuple[str, str]:
    """(kind, reason) for a (B, classes) batch of raw model outputs: probabilities when every value is in
    [0, 1] and every row sums to 1; log-probabilities when every value is <= 0 and every row's
    logsumexp is 0; logits otherwise."""
    if outputs.ndim != 2 or outputs.shape[0] == 0:
        return "logits", f"outputs of shape {tuple(outputs.shape)} cannot be examined; logits assumed"
    x = outputs.detach().float().cpu()
    n = x.shape[0]
    if not torch.isfinite(x).all():
        return "logits", "the outputs are not all finite; logits assumed"
    sums = x.sum(dim=1)
    if x.min() >= -RANGE_TOLERANCE and x.max() <= 1 + RANGE_TOLERANCE and (sums - 1).abs().max() <= SUM_TOLERANCE:
        return "probabilities", f"detected: every output of {n} samples is in [0, 1] and each row sums to 1"
    if x.max() <= RANGE_TOLERANCE and torch.logsumexp(x, dim=1).abs().max() <= SUM_TOLERANCE:
        return "log_probabilities", f"detected: every output of {n} samples is <= 0 and exp of each row sums to 1"
    return "logits", f"detected: the outputs of {n} samples are not probabilities (rows do not sum to 1)"


def resolve_output_kind(declared: str | None, declared_origin: str, outputs: torch.Tensor) -> tuple[str, str, str]:
    """(kind, origin, disagreement): the declared kind when there is one, else the detected one.
    `disagreement` is "" unless a declared kind and what `outputs` look like disagree about probabilities."""
    found, reason = detect_output_kind(outputs)
    if declared is None:
        return found, reason, ""
    disagreement = ""
    if declared != found and "probabilities" in (declared, found):
        disagreement = (f"the output is {declared_origin} as {declared}, but on {len(outputs)} samples it looks like "
                        f"{found} ({reason.removeprefix('detected: ')})")
    return declared, declared_origin, disagreement


def to_probabilities(outputs: torch.Tensor, kind: str = "logits") -> torch.Tensor:
    """(B, classes) outputs of `kind` -> float32 probabilities, rows summing to 1.

    logits: softmax. log-probabilities: softmax too, which is exp for rows that are normalised and
    renormalises rows that quantization left slightly off. probabilities: no softmax; negative values
    (quantization noise) are clipped to 0 and rows are divided by their sum (a row of zeros becomes
    NaN, which the caller refuses as a non-finite output)."""
    x = outputs.float()
    if kind in ("logits", "log_probabilities"):
        return torch.softmax(x, dim=1)
    if kind == "probabilities":
        x = x.clamp_min(0)
        return x / x.sum(dim=1, keepdim=True)
    raise ValueError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")


def log_of_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """log(p), with p clamped to the smallest normal float32 first (no -inf)."""
    return torch.log(torch.clamp(probabilities, min=_TINY))


def declared_output_kind(model: object) -> str:
    """What `model`'s forward returns when it says so (`quantlens_output_kind`), else logits."""
    return getattr(model, OUTPUT_ATTRIBUTE, "logits")


def handling(kind: str) -> str:
    """What quantlens does with outputs of `kind`, for the run record."""
    if kind == "probabilities":
        return ("the model returns probabilities: quantlens takes their log inside the model's forward, so the "
                "softmax every evaluation applies returns them unchanged (no second softmax)")
    return "none: a softmax of the outputs is the model's probabilities"


def _append_log(graph_module: fx.GraphModule) -> fx.GraphModule:
    """Rewrite the graph so that it returns log(clamp(output, tiny)) instead of its output."""
    graph = graph_module.graph
    output = next(node for node in graph.nodes if node.op == "output")
    (value,) = output.args
    if not isinstance(value, fx.Node):
        raise TypeError("the traced model does not return a single tensor")
    with graph.inserting_before(output):
        clamped = graph.call_function(torch.clamp, (value,), {"min": _TINY})
        logged = graph.call_function(torch.log, (clamped,))
    output.args = (logged,)
    graph.lint()
    graph_module.recompile()
    return graph_module


def _log_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return log_of_probabilities(output)


def adapt_outputs(model: nn.Module, kind: str) -> tuple[nn.Module, str]:
    """(model, how) such that softmax of the model's outputs is the model's probabilities.

    Logits and log-probabilities are left as they are. A model returning probabilities is made to
    return their log: a graph the fx tracer can follow gets the log as the last node of its graph
    (module names and state_dict keys unchanged), so later traces and copies keep it; a model it
    cannot follow gets a forward hook, which copies keep (and which no later fx pass can drop,
    since those passes cannot trace the model either)."""
    if kind != "probabilities":
        return model, handling(kind)
    if isinstance(model, fx.GraphModule):
        adapted = _append_log(model)
    else:
        was_training = model.training
        try:
            adapted = _append_log(fx.symbolic_trace(model.eval()))
        except Exception:  # noqa: BLE001 - not traceable (data-dependent Python): the hook keeps it intact
            model.train(was_training)
            model.register_forward_hook(_log_hook)
            adapted = model
        else:
            adapted.train(was_training)
    setattr(adapted, OUTPUT_ATTRIBUTE, "log_probabilities")
    return adapted, handling(kind)
