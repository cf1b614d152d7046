"""Where computation runs: a `device` setting ('auto', 'cpu', 'cuda', 'cuda:1') and a module's device.

The model is the one source of truth: stages move the model once, and every loop that feeds it
(training, evaluation, calibration) sends its batches to the model's device.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.errors import ConfigError


def resolve_device(setting: str, field: str = "device") -> torch.device:
    """'auto' -> the first CUDA GPU when there is one, else the CPU; 'cuda' without a GPU is refused."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise ConfigError(f"{field}: {setting!r} is not a device (auto, cpu, cuda, cuda:<index>)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{field}: {setting} asked for, but torch sees no CUDA GPU on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{field}: {setting} asked for, but there are {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError(f"{field}: {setting!r} is not supported (auto, cpu, cuda, cuda:<index>)")
    return device


def module_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
