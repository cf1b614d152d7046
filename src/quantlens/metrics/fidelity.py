"""How closely a candidate model reproduces a reference model on the same samples (no labels needed).

Choosing among quantization recipes by accuracy on a few thousand labelled images picks by noise
when the recipes differ by less than the split can resolve (each score is a difference of two noisy
proportions). Fidelity to the float model is paired by construction and far less noisy:
  * agreement: fraction of samples whose top-1 class equals the reference's (higher is better);
  * kl: mean KL(reference || candidate) of the output distributions, in nats (lower is better).
"""

from __future__ import annotations

import numpy as np

from quantlens.metrics.classification import Predictions

# selection metrics that measure fidelity to FP32, and the ones where lower is better
FIDELITY_METRICS = ("agreement", "kl")
LOWER_IS_BETTER = frozenset({"kl"})
FP32_FIDELITY = {"agreement": 1.0, "kl": 0.0}  # the reference against itself
_EPS = 1e-12  # floor on probabilities: a class the candidate gives exactly 0 keeps a finite KL


def top1_agreement(reference: Predictions, candidate: Predictions) -> float:
    _check_paired(reference, candidate)
    return float(np.mean(reference.predicted == candidate.predicted))


def mean_kl(reference: Predictions, candidate: Predictions) -> float:
    """Mean over samples of sum_k p_k log(p_k / q_k), p the reference's probabilities (N, K)."""
    _check_paired(reference, candidate)
    p = np.clip(reference.probs.astype(np.float64), _EPS, 1.0)
    q = np.clip(candidate.probs.astype(np.float64), _EPS, 1.0)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def fidelity(reference: Predictions, candidate: Predictions) -> dict[str, float]:
    return {"agreement": top1_agreement(reference, candidate), "kl": mean_kl(reference, candidate)}


def _check_paired(reference: Predictions, candidate: Predictions) -> None:
    if reference.probs.shape != candidate.probs.shape or not np.array_equal(reference.indices, candidate.indices):
        raise ValueError(f"fidelity needs the same samples in the same order: reference {reference.probs.shape}, "
                         f"candidate {candidate.probs.shape}")
