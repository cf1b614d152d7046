"""Learning-rate schedules as per-step multipliers for torch's LambdaLR."""

from __future__ import annotations

import math


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Linear warm-up to 1, then cosine decay to 0 ("cosine") or flat ("constant")."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
