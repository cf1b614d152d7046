"""torchao's pt2e entry points, imported quietly.

torchao 0.18 warns on import (deprecations, CUDA-only libraries it cannot load on a CPU build) and torch's
export/dynamo/inductor loggers write lines a user did not ask for. `quiet_torchao()` keeps all of that out of the
user's output and restores every process-wide setting it touched (warning filters, logger levels, one
environment variable) when the block ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from quantlens.backends.base import MissingPackageError
from quantlens.errors import describe

SKIP_SO_ENV = "TORCHAO_FORCE_SKIP_LOADING_SO_FILES"  # torchao skips its CUDA-only shared libraries when set
_QUIET_LOGGERS = ("torchao", "torch.utils._pytree", "torch._dynamo", "torch._inductor", "torch.export",
                  "torch._export")


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """No warnings, no torchao/torch log lines below ERROR, torchao's CUDA-only libraries not loaded; the
    warning filters, logger levels and the environment variable are restored afterwards."""
    previous_env = os.environ.get(SKIP_SO_ENV)
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    os.environ[SKIP_SO_ENV] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous_env is None:
            os.environ.pop(SKIP_SO_ENV, None)
        else:
            os.environ[SKIP_SO_ENV] = previous_env


@dataclass(frozen=True)
class TorchaoApi:
    """The four torchao names the pt2e flow uses."""

    ObserverBase: type
    convert_pt2e: Any
    prepare_pt2e: Any
    x86: Any  # torchao.quantization.pt2e.quantizer.x86_inductor_quantizer


def load_torchao() -> TorchaoApi:
    """torchao's pt2e entry points (imported quietly), or MissingPackageError naming the install command."""
    with quiet_torchao():
        try:
            from torchao.quantization.pt2e import ObserverBase
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
        except ImportError as error:
            raise MissingPackageError("PyTorch x86 pt2e deployment needs the Python package 'torchao' (>= 0.18), "
                                      f"which cannot be imported ({describe(error)}); install it with: "
                                      "pip install 'quantlens[torchao]'") from error
    return TorchaoApi(ObserverBase, convert_pt2e, prepare_pt2e, x86)


def torchao_available() -> bool:
    try:
        load_torchao()
    except MissingPackageError:
        return False
    return True
