"""Cutting an eager torch model into feature extractor and classifier head, for stage timing.

The model is traced with torch.fx; the last `nn.Linear` called is taken as the classifier head,
and the graph is cut at its input. Everything from that Linear on is the head, everything before
it the feature extractor. The cut is refused (ForwardSplitError, with the reason) when the model
cannot be traced (data-dependent control flow), has no nn.Linear (a 1x1-conv classifier), uses the
functional `F.linear` for its head, or when the ops after the head read any tensor of the trunk
other than the head's input (e.g. a skip connection into the logits). The two halves are checked:
head(features(x)) must equal model(x).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from quantlens.backends.base import ForwardSplitError


def _last_linear(traced: fx.GraphModule) -> fx.Node:
    linears = [n for n in traced.graph.nodes
               if n.op == "call_module" and isinstance(traced.get_submodule(str(n.target)), nn.Linear)]
    if not linears:
        raise ForwardSplitError("the traced model calls no nn.Linear module")
    return linears[-1]


def split_at_last_linear(model: nn.Module, example_input: torch.Tensor) -> tuple[fx.GraphModule, fx.GraphModule, str]:
    """(features, head, description): features(x) is the input of the model's last nn.Linear,
    head(features(x)) == model(x). Raises ForwardSplitError with the reason when the model cannot split."""
    try:
        traced = fx.symbolic_trace(model)
    except fx.proxy.TraceError as error:
        raise ForwardSplitError(f"torch.fx cannot trace the model ({error})") from error
    linear = _last_linear(traced)
    feature_node = linear.args[0]
    if not isinstance(feature_node, fx.Node):
        raise ForwardSplitError("the last nn.Linear's input is not a traced tensor")
    nodes = list(traced.graph.nodes)
    head_nodes = nodes[nodes.index(linear):]  # the Linear, what follows it, and the output node
    head_set = set(head_nodes)
    for node in head_nodes:
        for source in node.all_input_nodes:
            if source not in head_set and source is not feature_node and source.op != "get_attr":
                raise ForwardSplitError(f"the ops after the last Linear also read {source.name!r} from the trunk")

    features_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes[:nodes.index(linear)]:
        env[node] = features_graph.node_copy(node, lambda n: env[n])
    features_graph.output(env[feature_node])
    features = fx.GraphModule(traced, features_graph)
    features.graph.eliminate_dead_code()
    features.recompile()

    head_graph = fx.Graph()
    head_env: dict[fx.Node, fx.Node] = {feature_node: head_graph.placeholder("features")}
    for node in head_nodes:
        for source in node.all_input_nodes:
            if source.op == "get_attr" and source not in head_env:
                head_env[source] = head_graph.node_copy(source, lambda n: head_env[n])
        head_env[node] = head_graph.node_copy(node, lambda n: head_env[n])
    head = fx.GraphModule(traced, head_graph)
    head.graph.eliminate_dead_code()
    head.recompile()

    with torch.no_grad():
        expected = model(example_input)
        got = head(features(example_input))
    if not torch.allclose(expected, got, rtol=1e-5, atol=1e-6):
        raise ForwardSplitError("head(features(x)) differs from model(x): the cut is not exact")
    layer = traced.get_submodule(str(linear.target))
    return features, head, f"cut at the input of {linear.target} ({layer.in_features} -> {layer.out_features})"
