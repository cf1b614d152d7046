"""How the deployed model's logits compare with the fake-quant simulation on the same images."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quantlens.backends.base import BackendError


@dataclass(frozen=True)
class Pt2eAgreement:
    images: int
    top1_agreement: float  # share of images with the simulation's top-1 class
    mean_abs_diff: float  # mean |deployed - simulated| over logits
    max_abs_diff: float
    max_abs_logit: float  # of the simulation: the scale the differences compare with

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_pt2e(deployed, qmodel: nn.Module, batches: Iterable[torch.Tensor]) -> Pt2eAgreement:
    """Top-1 agreement and logit differences between `deployed.run` (a Pt2eDeployment or a Pt2eRunner) and
    `qmodel` (the simulation)."""
    agree = images = 0
    total_diff = max_diff = max_logit = 0.0
    qmodel = qmodel.eval()
    for batch in batches:
        with torch.no_grad():
            simulated = qmodel(batch).float()
        deployed_logits = torch.as_tensor(deployed.run(batch)).float()
        diff = (deployed_logits - simulated).abs()  # (B, classes)
        agree += int((deployed_logits.argmax(1) == simulated.argmax(1)).sum())
        images += batch.shape[0]
        total_diff += float(diff.sum()) / diff.shape[1]
        max_diff = max(max_diff, float(diff.max()))
        max_logit = max(max_logit, float(simulated.abs().max()))
    if images == 0:
        raise BackendError("check_pt2e: no batches given")
    return Pt2eAgreement(images, agree / images, total_diff / images, max_diff, max_logit)
