"""The dry run (`--check`): validate an experiment without running it, and write nothing.

Checked: the config (by building the spec), the run root (writable, or creatable), the data spec
(its files and layout, without decoding images), the model reference, the weights file (its
header and archive sizes, without loading tensors) with its sidecar, and whether each benchmark
backend can run here. Every refusal is one QuantlensError whose message starts with the field.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from quantlens.backends import BACKENDS
from quantlens.backends.base import Target, package_installed
from quantlens.data.check import inspect_data_spec
from quantlens.devices import resolve_device
from quantlens.errors import ConfigError, QuantlensError, naming_field
from quantlens.experiments.record import check_run_root
from quantlens.experiments.setup import Setup
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef, build_model
from quantlens.models.check import check_weights_file

_PACKAGES = {"timm": "timm", "torchvision": "torchvision"}


def check_weights(spec: ExperimentSpec) -> str | None:
    """The weights file's header and its sidecar, before any work; None when no weights are given."""
    if spec.model.weights is None:
        return None
    try:
        return check_weights_file(spec.model.weights)
    except QuantlensError as exc:
        raise naming_field("model.weights", exc) from None


def check_model_reference(reference: str) -> str:
    """The model reference resolves to something that can be built here (nothing is imported)."""
    try:
        ref = ModelRef.parse(reference)
    except QuantlensError as exc:
        raise naming_field("model.name", exc) from None
    if ref.kind in _PACKAGES and not package_installed(_PACKAGES[ref.kind]):
        raise ConfigError(f"model.name: {reference} needs the package {_PACKAGES[ref.kind]!r}, which is not "
                          f"installed (pip install 'quantlens[{_PACKAGES[ref.kind]}]')")
    if ref.kind == "python":
        module, _, attr = ref.name.rpartition(":")
        if not module or not attr:
            raise ConfigError(f"model.name: {reference!r} must look like 'python:<module or file.py>:<callable>'")
        if module.endswith(".py"):
            if not Path(module).expanduser().is_file():
                raise ConfigError(f"model.name: python model file {module} does not exist")
        else:
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"model.name: module {module!r} cannot be found ({exc})") from None
            if found is None:
                raise ConfigError(f"model.name: module {module!r} cannot be found")
    return f"{ref.kind} model {ref.name}"


def check_zoo_model(spec: ExperimentSpec) -> str | None:
    """Build a zoo model (its options checked) and plan every quantization entry on it, so a pattern that
    selects no layer is found now. Layer names do not depend on the class count, so two classes serve.
    Models from outside the zoo run the user's code when built: they are left to the run."""
    if ModelRef.parse(spec.model.name).kind != "zoo":
        return None
    from quantlens.experiments.simulation import plan_simulations

    channels = spec.data.channels or 3
    try:
        model = build_model(spec.model.name, num_classes=2, in_channels=channels,
                            image_size=spec.data.image_size or ModelRef.parse(spec.model.name).preferred_input_size,
                            options=spec.model.options)
    except QuantlensError as exc:
        raise naming_field("model.options", exc) from None
    if spec.quantization:
        plan_simulations(spec, model)
    return f"{sum(p.numel() for p in model.parameters())} parameters with 2 classes"


def check_backends(spec: ExperimentSpec) -> list[str]:
    """One line per benchmark backend that cannot run here; ConfigError when none can."""
    if not spec.benchmark.enabled:
        return []
    target = Target(device=spec.benchmark.device, threads=1)
    unavailable = []
    for name in spec.benchmark.backends:
        ok, reason = BACKENDS.get(name).available(target)
        if not ok:
            unavailable.append(f"{name}: unavailable: {reason}")
    if len(unavailable) == len(spec.benchmark.backends):
        raise ConfigError(f"benchmark.backends: none can run here ({'; '.join(unavailable)})")
    return unavailable


def check_splits_present(spec: ExperimentSpec, official: dict[str, int]) -> None:
    """ConfigError when the run needs a split that data holding only some official splits lacks: data
    with a train split gets the others carved from it (`data.splits.holdout_split`), data without one
    has only the splits it holds."""
    if not official or "train" in official:
        return
    held = ", ".join(f"{name} {n}" for name, n in official.items())
    if spec.train.enabled:
        raise ConfigError(f"train.enabled: {spec.data.source} has no train samples to train on (it holds {held}; "
                          f"the data holds no train split)")
    wanted = spec.eval.split
    if wanted in ("train", "val", "test") and wanted not in official:
        raise ConfigError(f"eval.split is {wanted!r}, but {spec.data.source} has no {wanted} samples (it holds "
                          f"{held}; the data holds no train split)")


def check_experiment(spec: ExperimentSpec) -> list[str]:
    """What a run of `spec` would use, one line each; ConfigError naming the field at the first problem."""
    lines = [f"config: {spec.name} (version {spec.version})"]
    lines.append(f"run root: {check_run_root(spec.output.root)}")
    lines.append(f"device: {resolve_device(spec.device)}")
    try:
        found = inspect_data_spec(spec.data.source)
    except QuantlensError as exc:
        raise naming_field("data.source", exc) from None
    lines.append(f"data: {found.summary}")
    positive = spec.eval.positive_index(found.class_names, spec.data.source)
    if len(found.class_names) == 2:
        lines.append(f"positive class: {found.class_names[positive]} (index {positive})")
    check_splits_present(spec, found.splits)
    lines.append(f"model: {check_model_reference(spec.model.name)}")
    built = check_zoo_model(spec)
    if built:
        lines.append(f"model: builds ({built})")
    weights = check_weights(spec)
    if weights is None:
        origin = Setup.weights_origin(spec)
        weights = {"trained in this run": "none (trained here)",
                   "random (untrained)": "none: the model's weights are random"}.get(origin, origin)
    lines.append(f"weights: {weights}")
    lines.extend(f"warning: benchmark.backends: {line}" for line in check_backends(spec))
    return lines
