"""Models from outside the zoo: `python:<module>:<callable>`, `timm:<name>`, `torchvision:<name>`.

`python:` accepts a module path (`pkg.models:make_net`) or a file (`./net.py:Net`). The callable
receives whichever of `num_classes`, `in_channels`, `image_size` its signature accepts.
(ONNX files, `onnx:<file>`, are read by `quantlens.models.onnx`.)
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

from quantlens.errors import ModelError, describe

_STANDARD_ARGS = ("num_classes", "in_channels", "image_size")


def _import_callable(target: str) -> Callable[..., nn.Module]:
    module_ref, sep, attr = target.rpartition(":")
    if not sep or not module_ref or not attr:
        raise ModelError(f"python model {target!r} must look like 'python:<module or file.py>:<callable>'")
    if module_ref.endswith(".py"):
        path = Path(module_ref).expanduser()
        if not path.is_file():
            raise ModelError(f"python model file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"quantlens_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's own code failed; say where, not a traceback
            raise ModelError(f"importing {path} failed: {describe(exc)}") from exc
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise ModelError(f"cannot import module {module_ref!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"module {module_ref!r} has no attribute {attr!r}") from None


def build_python_model(target: str, **kwargs) -> nn.Module:
    factory = _import_callable(target)
    try:
        params = inspect.signature(factory).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        call_kwargs = {k: v for k, v in kwargs.items() if accepts_any or k in params}
    except (TypeError, ValueError):
        call_kwargs = {}
    try:
        model = factory(**call_kwargs)
    except Exception as exc:
        raise ModelError(f"python model {target!r} failed to build: {describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"python model {target!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def import_optional(package: str):
    """The optional package `package` (timm, torchvision), or a ModelError with its install line."""
    try:
        return importlib.import_module(package)
    except Exception as exc:  # torchvision/timm can fail with RuntimeError on a mismatched torch build
        raise ModelError(f"'{package}:' models need the {package} package, which does not import here "
                         f"({describe(exc)}); install it with pip install 'quantlens[{package}]'") from None


def build_timm_model(name: str, *, num_classes: int, in_channels: int, **_) -> nn.Module:
    timm = import_optional("timm")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    except RuntimeError as exc:
        raise ModelError(f"timm cannot build {name!r}: {exc}") from None


def build_torchvision_model(name: str, *, num_classes: int, **_) -> nn.Module:
    if "@" in name:
        raise ModelError(f"torchvision:{name}: '@{name.partition('@')[2]}' names pretrained weights, which load "
                         f"only with model.pretrained (--pretrained)")
    import_optional("torchvision")
    from torchvision import models

    try:
        return models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError as exc:
        raise ModelError(f"torchvision has no model {name!r} ({exc})") from None


def check_copyable(model: nn.Module, reference: str) -> None:
    """ModelError in one line when `model` cannot be deep-copied (copy.deepcopy uses pickle's protocol,
    so a model that cannot be pickled fails here too): simulation, benchmarks and deployments work on
    copies. A module holding an inference session, an open file or a lock is the usual cause."""
    try:
        copy.deepcopy(model)
    except Exception as exc:  # TypeError "cannot pickle ..." and whatever a custom __deepcopy__ raises
        raise ModelError(f"model {reference} cannot be copied ({describe(exc)}); quantlens quantizes and benchmarks "
                         f"copies of the model: keep runtime sessions, open files and locks out of the module (a "
                         f"model in an ONNX file is read with onnx:<file>)") from None
