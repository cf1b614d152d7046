"""The experiment file: one validated, versioned config object per experiment.

Every block rejects unknown keys (naming the key and the block's known keys), so a typo in a
YAML file is an error, never a silently ignored setting. `quantlens schema` prints the JSON Schema.

Versions: the file's `version` is 1 (its blocks have not changed shape). Quantization entries carry
their own `version` (2: one recipe per role); version-1 entries are read and migrated, and
`migration_notes` says which, for the caller to show (the library prints nothing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from quantlens.backends import BACKENDS
from quantlens.data.registry import loader_for
from quantlens.errors import ConfigError, QuantlensError
from quantlens.experiments.config_file import read_config_file
from quantlens.models.build import ModelRef
from quantlens.recipes import Block, QuantizationConfig, TrainConfig
from quantlens.recipes.benchmark import BenchmarkConfig
from quantlens.recipes.migration import migrate_quantization_entry
from quantlens.recipes.quantization import DeployRuntime
from quantlens.recipes.validation import describe_validation_error, shown

# Unchanged by quantization entries' version 2: they carry their own version, and a version-1 file
# (entries included) still reads.
SPEC_VERSION = 1
# Run names become folder names (`<time>-<name>-<id>.partial`): one path component, well under
# the 255-byte limit of file names, never starting with a dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 100
MAX_IMAGE_SIDE = 4096
DEFAULT_POSITIVE_CLASS = 1  # a binary task's second class, e.g. MedMNIST's "pneumonia" after "normal"


def _non_empty(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("an empty path; give a path or leave the key out")
    return value


OptionalPath = Annotated[str | None, AfterValidator(_non_empty)]


def check_run_name(value: str) -> str:
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"a run name holds at most {MAX_NAME_LENGTH} characters, got {len(value)}")
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a run name: it names the run folder, so it may hold only letters, "
                         f"digits, '_', '.' and '-', and starts with a letter or digit")
    return value


class DataConfig(Block):
    source: str = Field("digits", description="'digits', 'medmnist:<file.npz>', 'imagefolder:<root>' or 'idx:<dir>'")
    image_size: int | None = Field(None, gt=0, le=MAX_IMAGE_SIDE,
                                   description="square input side; default: the data's own size when uniform, else "
                                               "the model's preferred size")
    channels: Literal[1, 3] | None = Field(None, description="input channels; default: the data's, or what a "
                                                             "fixed-input model needs")
    mean: tuple[float, ...] | None = Field(None, description="per-channel mean on [0,1] pixels; default: per dataset")
    std: tuple[float, ...] | None = Field(None, description="per-channel std; default: per dataset")
    augment: tuple[Literal["flip", "crop"], ...] = Field((), description="training augmentation")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    test_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    split_seed: int = 0

    @field_validator("source")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        try:
            loader_for(value)
        except QuantlensError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.95:
            raise ValueError(f"data.val_fraction + data.test_fraction is {self.val_fraction + self.test_fraction:g}; "
                             f"together they must leave at least 5% of the samples for training")
        return self

    @model_validator(mode="after")
    def _stats_pair(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std must be given together")
        if self.std is not None and (len(self.std) != len(self.mean) or min(self.std) <= 0):
            raise ValueError("data.std must be positive and as long as data.mean")
        return self


class ModelConfig(Block):
    name: str = Field("compact_cnn", description="zoo name, 'python:<module>:<callable>', 'onnx:<file>' (or a path "
                                                 "ending in .onnx), 'timm:<name>' or 'torchvision:<name>'")
    weights: OptionalPath = Field(None, description="checkpoint (state_dict, {'state_dict':...}, Lightning .ckpt, "
                                                  "safetensors); loaded with weights_only=True")
    pretrained: bool = Field(False, description="timm:<name> / torchvision:<name> only: load the weights the package "
                                                "ships, from its local cache (never downloaded), and default to the "
                                                "model's own input size, resize and crop, interpolation, mean and std")
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments of the model factory")
    output: Literal["auto", "logits", "probabilities", "log_probabilities"] = Field(
        "auto", description="what the model returns; auto: an ONNX file's metadata, else detected on real samples "
                            "(probabilities: every row in [0, 1] summing to 1); probabilities get no second softmax")
    mean: tuple[float, ...] | None = Field(None, description="per-channel mean the model subtracts, in units of "
                                                             "pixel_scale; default: an ONNX file's metadata, else "
                                                             "data.mean")
    std: tuple[float, ...] | None = Field(None, description="per-channel std the model divides by, in units of "
                                                            "pixel_scale")
    pixel_scale: float | None = Field(None, gt=0, description="the value of a white pixel the model expects (1: [0, 1] "
                                                              "pixels, 255: raw 0..255); alone, mean 0 and std 1")
    input_layout: Literal["auto", "nchw", "nhwc"] = Field(
        "auto", description="an ONNX file's input layout; auto: its metadata, else its input shape, else NCHW")

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            ModelRef.parse(value)
        except QuantlensError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("pretrained")
    @classmethod
    def _pretrained_source(cls, value: bool, info: ValidationInfo) -> bool:
        name = info.data.get("name")
        if not value or name is None:  # a bad name is reported on its own
            return value
        kind = ModelRef.parse(name).kind
        if kind not in ("timm", "torchvision"):
            where = {"onnx": "the file", "zoo": "model.weights"}.get(kind, "its own code or model.weights")
            raise ValueError(f"applies to timm:<name> and torchvision:<name> models; {name} is "
                             f"{'an' if kind == 'onnx' else 'a'} {kind} model, whose weights come from {where}")
        if info.data.get("weights"):
            raise ValueError("true and model.weights both give the weights; give one of them (a checkpoint "
                             "fine-tuned from pretrained weights is loaded with model.weights alone)")
        return value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return tuple(float(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a comma-separated list of numbers") from None

    @model_validator(mode="after")
    def _stats_pair(self) -> ModelConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("model.mean and model.std must be given together")
        if self.std is not None and (len(self.std) != len(self.mean) or min(self.std) <= 0):
            raise ValueError("model.std must be positive and as long as model.mean")
        return self



class EvalConfig(Block):
    enabled: bool = Field(True, description="evaluate accuracy (off for speed-only runs on synthetic data)")
    split: Literal["auto", "train", "val", "test", "all"] = Field(
        "auto", description="auto: the test split when the data or the checkpoint's training run defines one, "
                            "else all samples")
    batch_size: int = Field(256, ge=1)
    positive_class: int | str | None = Field(
        None, description="binary tasks: the class treated as positive (sensitivity, specificity, AUROC, F1), "
                          "by index (0 or 1) or name; default: the second class (index 1); refused for tasks with "
                          "more than two classes")
    ece_bins: int = Field(15, ge=2)
    max_samples: int | None = Field(
        None, ge=1, description="evaluate a stratified (by class, proportional), seeded (`seed`) subset of this "
                                "many samples, drawn after calibration and selection samples are set aside (with "
                                "`selection:`, from the confirmation split); default: every sample")

    @field_validator("positive_class")
    @classmethod
    def _class_reference(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a class index is 0 or more, got {value}")
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty class name; give a class name or index, or leave the key out")
        return value

    def positive_index(self, class_names: list[str], data: str) -> int:
        """The index of the positive class among `class_names` (of the data `data`, for messages).

        A string is a class name when one matches exactly, else a decimal index (the command line gives
        strings); an int is an index. Without a value: index 1. ConfigError naming eval.positive_class
        and listing the classes when the value is given for a task with more than two classes, names no
        class, or is an index out of range."""
        value = self.positive_class
        classes = ", ".join(f"{i}: {name}" for i, name in enumerate(class_names[:12]))
        classes += f", ... ({len(class_names)} classes)" if len(class_names) > 12 else ""
        shown = repr(value) if isinstance(value, str) else str(value)
        if len(class_names) != 2:
            if value is None:
                return DEFAULT_POSITIVE_CLASS  # unused: multi-class metrics have no positive class
            raise ConfigError(f"eval.positive_class is {shown}, but it applies to binary tasks only and {data} has "
                              f"{len(class_names)} classes ({classes}); leave it out")
        if value is None:
            return DEFAULT_POSITIVE_CLASS
        if isinstance(value, str) and value in class_names:
            return class_names.index(value)
        index = int(value) if isinstance(value, int) or value.strip().isdecimal() else None
        if index is None or index >= len(class_names):
            what = "names no class" if index is None else "is not a class index"
            raise ConfigError(f"eval.positive_class is {shown}, which {what} of {data} (classes: {classes})")
        return index


class AnalysisConfig(Block):
    """How simulated models are examined besides accuracy."""

    layerwise_samples: int = Field(256, ge=0, description="samples for the layer-wise error report (0: off)")
    compliance_samples: int = Field(32, ge=0, description="samples for the format compliance check (0: off)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of intervals and tests")


class SelectionConfig(Block):
    """Three disjoint parts of the evaluation samples, so that a choice among recipes is made on data
    the reported figures never saw: per class, in the data's order (file names for image folders),
    the first `calibration_per_class` samples calibrate, the next `selection_per_class` choose the
    recipe, and all the others (the confirmation split) give the reported figures."""

    calibration_per_class: int = Field(0, ge=0, description="calibration samples per class (0: the three-way "
                                                            "split is off)")
    selection_per_class: int = Field(0, ge=0, description="selection samples per class, after the calibration ones")
    metric: Literal["top1", "auroc", "macro_f1", "agreement", "kl"] = Field(
        "top1", description="what the choice optimises on the selection split: top1, auroc or macro_f1 (highest "
                            "wins), agreement (top-1 agreement with FP32, highest wins) or kl (mean KL divergence "
                            "from FP32's outputs, lowest wins); the fidelity metrics are paired with FP32 and far "
                            "less noisy when the recipes differ by less than the split resolves")
    deploy: tuple[DeployRuntime, ...] = Field(
        (), description="deploy the chosen recipe with its own scales on these runtimes (as a quantization "
                        "entry's `deploy:`), evaluated on the confirmation split")

    @property
    def enabled(self) -> bool:
        return self.calibration_per_class > 0

    @model_validator(mode="after")
    def _both_parts(self) -> SelectionConfig:
        if self.selection_per_class and not self.calibration_per_class:
            raise ValueError("selection.calibration_per_class: must be > 0 when selection_per_class is given "
                             "(the three parts are cut together)")
        return self


class OutputConfig(Block):
    root: OptionalPath = Field(None, description="run root; default $EXPERIMENT_ROOT, else ./runs")
    name: str | None = Field(None, description="run folder name prefix; default: the experiment name")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        return None if value is None else check_run_name(value)


class ExperimentSpec(Block):
    version: Literal[1] = Field(SPEC_VERSION, description="schema version of this file")
    name: str = Field("experiment", description="names the run folder unless output.name is given")
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d{1,2})?)$",
                        description="where training, evaluation, calibration and simulation run: auto (the GPU "
                                    "when there is one), cpu, cuda or cuda:<index>; the benchmark has its own")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    quantization: tuple[QuantizationConfig, ...] = Field(
        (), description="simulated formats, each evaluated against FP32 on the same samples")
    peers: tuple[Literal["ort_minmax", "ort_entropy", "ort_percentile", "nncf", "torch_x86"], ...] = Field(
        (), description="other tools' own INT8 post-training quantization of the same model on the same "
                        "calibration samples, evaluated beside quantlens's recipes on the same samples")
    selection: SelectionConfig = Field(SelectionConfig(), description="calibration / selection / confirmation "
                                                                      "split of the evaluation samples")
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
        return (value,) if isinstance(value, dict) else value

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        return check_run_name(value)

    @model_validator(mode="after")
    def _peers_beside_recipes(self) -> ExperimentSpec:
        if self.peers and not self.quantization:
            raise ValueError("peers: are calibrated on the samples quantlens's recipes calibrate on, and shown beside "
                             "them: give at least one quantization entry")
        return self

    @model_validator(mode="after")
    def _simulation_needs_evaluation(self) -> ExperimentSpec:
        if self.quantization and not self.eval.enabled:
            raise ValueError("eval.enabled: must be true when quantization entries are given (each is evaluated "
                             "against FP32)")
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentSpec:
        labels = [q.label for q in self.quantization]
        duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
        if duplicates:
            raise ValueError(f"quantization: entries must differ (give each a name): {', '.join(duplicates)} repeats")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def spec_from_dict(values: Any, origin: str = "config") -> ExperimentSpec:
    if not isinstance(values, dict):
        given = "an empty value" if values is None or values == "" else shown(values)
        raise ConfigError(f"{origin}: the top level must be a mapping of blocks (data, model, train, ...), "
                          f"not {given}")
    try:
        return ExperimentSpec.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin, ExperimentSpec)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    return spec_from_dict(read_config_file(path), str(Path(path).expanduser()))


def migration_notes(values: Any) -> list[str]:
    """One line per quantization entry of `values` (an experiment as read from its file) that was
    written in an older version and is migrated when read, e.g. 'quantization.0: version-1 entry read as
    version 2 (weight_mode -> weights.mode); ...'. Entries that cannot be read are left to
    `spec_from_dict`, which names the problem."""
    entries = values.get("quantization") if isinstance(values, dict) else None
    entries = [entries] if isinstance(entries, dict) else entries
    notes: list[str] = []
    for i, entry in enumerate(entries if isinstance(entries, (list, tuple)) else ()):
        if isinstance(entry, dict):
            try:
                _, found = migrate_quantization_entry(entry)
            except ValueError:
                continue
            notes += [f"quantization.{i}: {note}" for note in found]
    return notes


def load_spec_with_notes(path: str | Path) -> tuple[ExperimentSpec, list[str]]:
    """`load_spec` and the file's `migration_notes`, for a caller that shows them."""
    values = read_config_file(path)
    return spec_from_dict(values, str(Path(path).expanduser())), migration_notes(values)
