"""Pretrained weights of `timm:` and `torchvision:` models, from the packages' local caches only (a run
never downloads), with the preprocessing each package states for them."""

from __future__ import annotations

from quantlens.errors import ModelError
from quantlens.models.pretrained.base import ModelPreprocessing, PretrainedWeights
from quantlens.models.pretrained.timm_weights import resolve_timm
from quantlens.models.pretrained.torchvision_weights import resolve_torchvision

__all__ = ["PRETRAINED_KINDS", "ModelPreprocessing", "PretrainedWeights", "resolve_pretrained"]

_RESOLVERS = {"timm": resolve_timm, "torchvision": resolve_torchvision}
PRETRAINED_KINDS = tuple(_RESOLVERS)


def resolve_pretrained(kind: str, name: str) -> PretrainedWeights:
    """The cached pretrained weights of model `name` of package `kind` ('timm' or 'torchvision'); a
    ModelError in one line when the package does not import, has no such weights, or they are not cached."""
    if kind not in _RESOLVERS:
        raise ModelError(f"pretrained weights load for {' and '.join(f'{k}:<name>' for k in PRETRAINED_KINDS)} "
                         f"models, not {kind} models")
    return _RESOLVERS[kind](name)
