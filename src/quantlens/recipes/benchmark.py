"""The benchmark recipe: which backends, which batch sizes, how long and how carefully to time them.

A `benchmark:` block of the experiment YAML and the options of `quantlens bench` build the same
object. It is validated when built: a batch size of 0 or a stage/profile backend that is not
benchmarked is refused with the field named. Backend names are checked against the backend
registry by the experiment spec (`experiments/spec.py`), which sits below the registry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from quantlens.errors import ConfigError
from quantlens.recipes.base import Block

BENCHMARK_CONFIG_VERSION = 1
DEFAULT_BASELINE = "torch-fp32"


class BenchmarkConfig(Block):
    """What `run_benchmark` measures and how. Times are seconds."""

    version: Literal[1] = Field(BENCHMARK_CONFIG_VERSION, description="schema version of this block")
    enabled: bool = Field(True, description="run the benchmark (an experiment file may carry the block switched off)")
    backends: tuple[str, ...] = Field(("torch-fp32", "torch-int8", "ort-fp32", "ort-int8"), min_length=1,
                                      description="backend names, measured side by side in one interleaved run "
                                                  "per batch size")
    baseline: str | None = Field(None, description="backend the speedups are relative to; default torch-fp32 "
                                                   "when listed, else the first backend")
    batch_sizes: tuple[int, ...] = Field((1, 8, 64), min_length=1,
                                         description="batch 1 gives latency; larger ones the throughput sweep")
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int | Literal["auto"] = Field("auto", description="intra-op threads of every backend; auto: all "
                                                               "usable cores")
    image_size: int | None = Field(None, ge=1, description="square input side; default: the model's own")
    # timing
    warmup_iterations: int = Field(2, ge=0, description="warm-up calls per backend before timing")
    warmup_until_steady: bool = Field(True, description="go on warming up until the timings settle")
    warmup_max_seconds: float = Field(10.0, gt=0, le=600, description="cap on each backend's steady-state warm-up")
    rounds: int = Field(10, ge=1, le=100_000, description="interleaved rounds (each backend once per round)")
    samples_per_round: int = Field(3, ge=1, le=10_000, description="timed calls per backend per round")
    discard_per_round: int = Field(1, ge=0, le=10_000, description="untimed calls per backend per round, first, "
                                                                    "to re-warm caches the others evicted")
    order: Literal["shuffle", "alternate"] = "shuffle"
    min_seconds: float = Field(0.0, ge=0, le=3600, description="minimum duration of each interleaved run: rounds "
                                                               "are added (up to max_rounds) until the estimated "
                                                               "run lasts this long; 0 leaves `rounds` as is")
    max_rounds: int = Field(1000, ge=1, le=100_000)
    max_call_seconds: float = Field(30.0, gt=0, description="a backend whose estimated call at a batch size "
                                                            "exceeds this is not timed at that size (the reason "
                                                            "and the estimate are recorded)")
    noise_threshold: float = Field(0.10, gt=0, lt=1, description="robust CV above which a run is flagged noisy")
    # data for quantization and the agreement check
    calibration_batches: int = Field(4, ge=1, description="calibration batches given to static INT8 backends")
    agreement_samples: int = Field(64, ge=1, description="images on which each backend's logits are compared "
                                                         "with eager FP32 (top-1 agreement, max |difference|)")
    # pipeline stage timing
    stages: bool = Field(True, description="time the classification pipeline stage by stage")
    stage_backends: tuple[str, ...] | None = Field(None, description="backends whose pipeline is timed (each must "
                                                                     "be benchmarked); default: the baseline")
    stage_batch_size: int = Field(8, ge=1, description="images per pipeline request")
    stage_iterations: int = Field(20, ge=1, le=100_000, description="timed pipeline requests per backend")
    split_forward: bool = Field(True, description="time feature extraction and classifier head separately "
                                                  "where the model allows it")
    # operator profiles
    profile: tuple[tuple[str, str], ...] = Field((), description="pairs [baseline, candidate] to profile per "
                                                                  "operator, e.g. [[ort-fp32, ort-int8]]")
    profile_batch_size: int | None = Field(None, ge=1, description="default: the largest batch size")
    profile_runs: int = Field(3, ge=1, le=1000)
    seed: int = 0

    @field_validator("batch_sizes")
    @classmethod
    def _positive_unique_batches(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for size in value:
            if size < 1:
                raise ValueError(f"batch size {size} is not allowed (each must be >= 1)")
        if len(set(value)) != len(value):
            raise ValueError(f"{list(value)} repeats a size")
        return value

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"threads must be >= 1 or 'auto', got {value}")
        return value

    @field_validator("backends")
    @classmethod
    def _known_unique_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"{list(value)} repeats a name")
        return value

    @model_validator(mode="after")
    def _references_are_benchmarked(self) -> BenchmarkConfig:
        listed = set(self.backends)
        if self.baseline is not None and self.baseline not in listed:
            raise ValueError(f"baseline {self.baseline!r} is not among the backends ({', '.join(self.backends)})")
        for field, names in (("stage_backends", self.stage_backends or ()),
                             ("profile", [name for pair in self.profile for name in pair])):
            missing = [name for name in names if name not in listed]
            if missing:
                raise ValueError(f"{field}: {', '.join(missing)} not among the benchmarked backends "
                                 f"({', '.join(self.backends)})")
        for pair in self.profile:
            if pair[0] == pair[1]:
                raise ValueError(f"profile: a pair needs two different backends, got {list(pair)}")
        return self

    @property
    def baseline_backend(self) -> str:
        if self.baseline is not None:
            return self.baseline
        return DEFAULT_BASELINE if DEFAULT_BASELINE in self.backends else self.backends[0]

    @property
    def stage_backend_names(self) -> tuple[str, ...]:
        return self.stage_backends if self.stage_backends is not None else (self.baseline_backend,)

    @property
    def profile_batch(self) -> int:
        return self.profile_batch_size or max(self.batch_sizes)


def parse_name_list(text: str, option: str = "--backends") -> tuple[str, ...]:
    """"torch-fp32, ort-int8" -> ("torch-fp32", "ort-int8"); a ConfigError for an empty list."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ConfigError(f"{option} needs at least one name (comma-separated)")
    return names


def _positive_int(part: str, option: str, what: str) -> int:
    try:
        value = int(part)
    except ValueError:
        raise ConfigError(f"{option}: {part!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"{option}: {what} {value} is not allowed (each must be >= 1)")
    return value


def parse_batch_sizes(text: str, option: str = "--batch-sizes") -> tuple[int, ...]:
    """"1,8,64" -> (1, 8, 64); a ConfigError naming the option for anything that is not a positive integer."""
    sizes = tuple(_positive_int(part, option, "batch size") for part in (p.strip() for p in text.split(",")) if part)
    if not sizes:
        raise ConfigError(f"{option} needs at least one batch size")
    return sizes


def parse_profile_pairs(text: str, option: str = "--profile") -> tuple[tuple[str, str], ...]:
    """"ort-fp32:ort-int8,torch-fp32:torch-int8" -> (("ort-fp32", "ort-int8"), ("torch-fp32", "torch-int8"))."""
    pairs = []
    for part in parse_name_list(text, option):
        baseline, sep, candidate = part.partition(":")
        if not sep or not baseline.strip() or not candidate.strip():
            raise ConfigError(f"{option}: {part!r} is not a pair 'baseline:candidate'")
        pairs.append((baseline.strip(), candidate.strip()))
    return tuple(pairs)


def parse_threads(text: str, option: str = "--threads") -> int | str:
    """"auto" or a positive integer; a ConfigError naming the option otherwise."""
    return "auto" if text.strip() == "auto" else _positive_int(text.strip(), option, "a thread count of")
