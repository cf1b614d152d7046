"""The experiment file: one validated, versioned config object per experiment.

Every block rejects unknown keys (naming the key and the block's known keys), so a typo in a
YAML file is an error, never a silently ignored setting. `quantlens schema` prints the JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from quantlens.backends import BACKENDS
from quantlens.errors import ConfigError
from quantlens.recipes import Block, QuantizationConfig, TrainConfig
from quantlens.recipes.benchmark import BenchmarkConfig

SPEC_VERSION = 1


class DataConfig(Block):
    source: str = Field("digits", description="'digits', 'medmnist:<file.npz>', 'imagefolder:<root>' or 'idx:<dir>'")
    image_size: int | None = Field(None, gt=0, description="square input side; default: the data's own size "
                                                           "when uniform, else the model's preferred size")
    channels: Literal[1, 3] | None = Field(None, description="input channels; default: the data's, or what a "
                                                             "fixed-input model needs")
    mean: tuple[float, ...] | None = Field(None, description="per-channel mean on [0,1] pixels; default: per dataset")
    std: tuple[float, ...] | None = Field(None, description="per-channel std; default: per dataset")
    augment: tuple[Literal["flip", "crop"], ...] = Field((), description="training augmentation")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    test_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    split_seed: int = 0

    @model_validator(mode="after")
    def _stats_pair(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std must be given together")
        if self.std is not None and (len(self.std) != len(self.mean) or min(self.std) <= 0):
            raise ValueError("data.std must be positive and as long as data.mean")
        return self


class ModelConfig(Block):
    name: str = Field("compact_cnn", description="zoo name, 'python:<module>:<callable>', 'timm:<name>' or "
                                                 "'torchvision:<name>'")
    weights: str | None = Field(None, description="checkpoint (state_dict, {'state_dict':...}, Lightning .ckpt, "
                                                  "safetensors); loaded with weights_only=True")
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments of the model factory")


class EvalConfig(Block):
    enabled: bool = Field(True, description="evaluate accuracy (off for speed-only runs on synthetic data)")
    split: Literal["auto", "train", "val", "test", "all"] = Field(
        "auto", description="auto: the test split when the data or the checkpoint's training run defines one, "
                            "else all samples")
    batch_size: int = Field(256, ge=1)
    positive_class: int = Field(1, ge=0, description="class index treated as positive in binary metrics")
    ece_bins: int = Field(15, ge=2)


class AnalysisConfig(Block):
    """How simulated models are examined besides accuracy."""

    layerwise_samples: int = Field(256, ge=0, description="samples for the layer-wise error report (0: off)")
    compliance_samples: int = Field(32, ge=0, description="samples for the format compliance check (0: off)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of intervals and tests")


class OutputConfig(Block):
    root: str | None = Field(None, description="run root; default $EXPERIMENT_ROOT, else ./runs")
    name: str | None = Field(None, description="run folder name prefix; default: the experiment name")


class ExperimentSpec(Block):
    version: Literal[1] = Field(SPEC_VERSION, description="schema version of this file")
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    quantization: tuple[QuantizationConfig, ...] = Field(
        (), description="simulated formats, each evaluated against FP32 on the same samples")
    analysis: AnalysisConfig = AnalysisConfig()
    benchmark: BenchmarkConfig = Field(BenchmarkConfig(enabled=False),
                                       description="latency/throughput of real backends; on when the block is given")
    output: OutputConfig = OutputConfig()

    @field_validator("benchmark")
    @classmethod
    def _known_backends(cls, value: BenchmarkConfig) -> BenchmarkConfig:
        for field, names in (("backends", value.backends), ("stage_backends", value.stage_backends or ()),
                             ("profile", [name for pair in value.profile for name in pair])):
            for name in names:
                if name not in BACKENDS:
                    raise ValueError(f"{field}: {BACKENDS.unknown_message(name)}")
        return value

    @field_validator("quantization", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _simulation_needs_evaluation(self) -> ExperimentSpec:
        if self.quantization and not self.eval.enabled:
            raise ValueError("quantization entries are evaluated against FP32: eval.enabled must be true")
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentSpec:
        labels = [q.label for q in self.quantization]
        duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
        if duplicates:
            raise ValueError(f"quantization entries must differ (give each a name): {', '.join(duplicates)} repeats")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config block class behind a field annotation (unwrapping tuple[Block, ...] and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _block_fields(loc: tuple) -> list[str]:
    """The known keys of the block where an unknown key was found."""
    model: type[BaseModel] | None = ExperimentSpec
    for part in loc[:-1]:
        if isinstance(part, int):  # an index into a list of blocks
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = _model_of(field.annotation) if field else None
        if model is None:
            return []
    return list(model.model_fields)


def describe_validation_error(exc: ValidationError, origin: str) -> str:
    """The first problem of a pydantic error as one line naming the field."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        known = _block_fields(loc)
        return f"{origin}: unknown key '{where}'" + (f" (known: {', '.join(known)})" if known else "") + more
    return f"{origin}: {where}: {str(first['msg']).removeprefix('Value error, ')}" + more


def spec_from_dict(values: dict, origin: str = "config") -> ExperimentSpec:
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of blocks (data, model, train, ...)")
    try:
        return ExperimentSpec.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
    return spec_from_dict(values or {}, str(path))
