"""`BenchmarkSession`: one model benchmarked on several backends, job by job.

    with BenchmarkSession(model, config, input_shape=(3, 224, 224), calibration=batches,
                          out_dir=run_dir / "benchmark") as session:
        session.prepare()                 # every backend, checked against eager FP32
        session.time_batch(1)             # one interleaved run per batch size
        session.time_pipelines()          # the classification pipeline stage by stage
        session.profile()                 # per-operator profiles of the configured pairs
    report = session.report()             # the typed BenchmarkReport; writes the JSON files

`session.run()` does all of it in the config's order (batch sizes ascending). Inside the `with`
block torch's intra-op thread count is the session's (restored afterwards) and leaving the block
closes every runner, also when a step failed. Progress goes out as `quantlens.events`; caveats
(noisy runs, disagreeing backends, a busy machine, skipped work) become notes on the report.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import torch
from torch import nn

from quantlens import events
from quantlens.backends import Target, torch_threads, usable_cores
from quantlens.bench.notes import BenchmarkNote
from quantlens.bench.pipeline import EncodedImages, PipelineTimings
from quantlens.bench.profile import ProfileComparison
from quantlens.bench.stats import describe_spread
from quantlens.bench.suite.batches import time_batch
from quantlens.bench.suite.inputs import RunPaths, check_inputs, check_shape
from quantlens.bench.suite.outputs import write_outputs
from quantlens.bench.suite.pipelines import time_pipelines
from quantlens.bench.suite.prepare import PreparedBackend, prepare_backend
from quantlens.bench.suite.profiles import run_profiles
from quantlens.bench.suite.report import BenchmarkReport
from quantlens.bench.suite.results import BackendOutcome, BatchOutcome
from quantlens.data.transforms import Preprocessing
from quantlens.environment import capture_environment
from quantlens.errors import QuantlensError
from quantlens.recipes.benchmark import BenchmarkConfig

# Below this top-1 agreement with eager FP32 a backend gets a note next to its speed.
AGREEMENT_NOTE_BELOW = 0.95


def load_note(threads: int, when: str) -> BenchmarkNote | None:
    """A note when the machine's 1-minute load average says other work competes for the cores."""
    if not hasattr(os, "getloadavg"):  # not on Windows
        return None
    cores = usable_cores()
    load = os.getloadavg()[0]
    # The 1-minute average includes this process's own threads (it prepared and ran the backends):
    # what competes is the rest, and it hurts once it exceeds the cores this run leaves free.
    others = load - threads
    if others <= max(cores - threads, 0) + 0.5:
        return None
    advice = ("libraries that wait at a barrier for all their threads (torch's OpenMP) stall whenever a core is "
              "taken; threads=1 is steadier on a busy machine" if threads > 1 else
              "even a single-threaded backend loses its core now and then (see the noise flags)")
    return BenchmarkNote("load", f"load average {load:.1f} on {cores} usable cores {when}: other work competes "
                                 f"for the cores; {advice}")


class BenchmarkSession:
    """Benchmark `model` (FP32; left unchanged, its train/eval mode included) on `config.backends`.

    input_shape: (C, H, W) of one image. calibration: float32 (B, C, H, W) batches, the first
    `config.calibration_batches` of which calibrate static INT8. validation: float32 (N, C, H, W)
    images for the agreement check and as timing inputs (default: the calibration images).
    images / preprocessing: what the pipeline decodes and how it transforms it (default: synthetic
    JPEGs at the input size). out_dir: the benchmark's folder; run_dir: the folder that every path
    written into JSON is relative to (default: out_dir's parent).
    """

    def __init__(self, model: nn.Module, config: BenchmarkConfig, *, input_shape: Sequence[int],
                 calibration: Sequence[torch.Tensor], out_dir: str | Path, validation: torch.Tensor | None = None,
                 images: EncodedImages | None = None, preprocessing: Preprocessing | None = None,
                 model_name: str = "model", run_dir: str | Path | None = None) -> None:
        if not isinstance(config, BenchmarkConfig):
            raise QuantlensError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
        self.model, self.config, self.model_name = model, config, model_name
        self.input_shape = check_shape(input_shape)
        self.calibration, self.images = check_inputs(calibration, validation, self.input_shape, config)
        self.encoded, self.preprocessing = images, preprocessing
        self.paths = RunPaths(Path(out_dir), None if run_dir is None else Path(run_dir))
        self.threads = usable_cores() if config.threads == "auto" else int(config.threads)
        self.target = Target(device=config.device, threads=self.threads)
        self.environment: dict = {}
        self.backends: list[BackendOutcome] = []
        self.batches: list[BatchOutcome] = []
        self.pipelines: list[PipelineTimings] = []
        self.profiles: list[ProfileComparison] = []
        self.notes: list[BenchmarkNote] = []  # the session's own; the batches' come with them
        self._prepared: dict[str, PreparedBackend] = {}
        self._reference: torch.Tensor | None = None  # eager FP32 logits of self.images, (n, classes)
        self._stack: contextlib.ExitStack | None = None

    # ---- the session's extent: threads set, runners closed ---------------------------------------

    def __enter__(self) -> BenchmarkSession:
        if self._stack is not None:
            raise QuantlensError("this benchmark session is already open")
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(torch_threads(self.threads))
        self._stack.callback(self.close)  # runs first on exit: runners closed under the session's threads
        self.paths.out_dir.mkdir(parents=True, exist_ok=True)
        self.environment = capture_environment(seeds={"benchmark": self.config.seed})
        self._add(load_note(self.threads, "when the benchmark started"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            if exc is None:
                stack.callback(self._add, load_note(self.threads, "when it ended"))
            stack.close()

    def close(self) -> None:
        """Close every prepared runner (each one, even when another one's close fails)."""
        prepared, self._prepared = self._prepared, {}
        with contextlib.ExitStack() as closing:
            for entry in prepared.values():
                closing.callback(entry.runner.close)

    def _add(self, note: BenchmarkNote | None) -> None:
        if note is not None:
            self.notes.append(note)

    def _require_open(self, step: str) -> None:
        if self._stack is None:
            raise QuantlensError(f"{step} runs inside the session: use `with BenchmarkSession(...) as session:`")

    def _require_prepared(self, step: str) -> None:
        self._require_open(step)
        if not self.backends:
            raise QuantlensError(f"{step} needs prepared backends: call session.prepare() first")

    # ---- the jobs ---------------------------------------------------------------------------------

    def prepare(self) -> tuple[BackendOutcome, ...]:
        """Prepare and check every listed backend; a QuantlensError when none is ready."""
        self._require_open("prepare")
        if self.backends:
            raise QuantlensError("the backends of this session are prepared already")
        with torch.no_grad():  # a copy: eval() and cpu() would change the caller's model
            self._reference = copy.deepcopy(self.model).eval().cpu()(self.images).float()
        events.note(f"preparing {len(self.config.backends)} backends for {self.model_name} {self.input_shape}, "
                    f"{self.threads} threads")
        for name in self.config.backends:
            outcome, entry = prepare_backend(name, self.model, self.config, self.target, self.calibration,
                                             self.images, self._reference, self.paths.out_dir / "work", self.paths)
            self.backends.append(outcome)
            if entry is not None:
                self._prepared[name] = entry
            agreement = outcome.agreement
            if agreement is not None and agreement.top1_agreement < AGREEMENT_NOTE_BELOW:
                self._add(BenchmarkNote("agreement", f"{name}: top-1 agreement with eager FP32 is "
                                                     f"{agreement.top1_agreement:.1%} on {agreement.samples} images; "
                                                     f"check its accuracy before trusting its speed", name))
        if not self._prepared:
            raise QuantlensError("no backend could be prepared: " + "; ".join(
                o.reason if o.reason.startswith(o.name) else f"{o.name}: {o.reason}" for o in self.backends))
        return tuple(self.backends)

    def time_batch(self, batch_size: int) -> BatchOutcome:
        """Time every ready backend at `batch_size` in one interleaved run."""
        self._require_prepared("time_batch")
        outcome = time_batch(batch_size, self.config, self.target, self._prepared,
                             {o.name: o for o in self.backends}, self.images, self.model_name, self.environment)
        if outcome.comparison is None:  # a lone backend: no comparison to flag it, so say it here
            for name, record in outcome.records.items():
                if record.is_noisy(self.config.noise_threshold):
                    self._add(BenchmarkNote("noisy", f"{name!r} is noisy: {describe_spread(record.summary)} (the "
                                                     f"threshold is {self.config.noise_threshold:.0%}); the machine "
                                                     f"was probably busy, re-run on a quiet one", name, batch_size))
        self.batches.append(outcome)
        return outcome

    def time_pipelines(self) -> tuple[PipelineTimings, ...]:
        """Time the pipeline of each of the config's stage backends, stage by stage."""
        self._require_prepared("time_pipelines")
        results, notes = time_pipelines(self.config, self._prepared, self.images, self.input_shape, self.encoded,
                                        self.preprocessing, self.target, self.model_name, self.environment)
        self.pipelines += results
        self.notes += notes
        return tuple(results)

    def profile(self) -> tuple[ProfileComparison, ...]:
        """Profile the config's backend pairs per operator."""
        self._require_prepared("profile")
        results, notes = run_profiles(self.config, self._prepared, self.images)
        self.profiles += results
        self.notes += notes
        return tuple(results)

    def report(self) -> BenchmarkReport:
        """Everything measured so far, as a typed report; writes its JSON files."""
        notes = [*self.notes, *(note for batch in self.batches for note in batch.notes)]
        report = BenchmarkReport(
            model=self.model_name, input_shape=self.input_shape, config=self.config, environment=self.environment,
            threads=self.threads, backends=tuple(self.backends),
            batches=tuple(sorted(self.batches, key=lambda b: b.batch_size)), pipelines=tuple(self.pipelines),
            profiles=tuple(self.profiles), notes=tuple(notes), folder=self.paths.folder, run_dir=self.paths.run_dir)
        return write_outputs(report, self.paths)

    def run(self) -> BenchmarkReport:
        """prepare, every batch size (ascending), the pipelines (when `stages`), the profiles; the report."""
        with self:
            self.prepare()
            for batch_size in sorted(self.config.batch_sizes):
                self.time_batch(batch_size)
            if self.config.stages:
                self.time_pipelines()
            self.profile()
        return self.report()


def run_benchmark(model: nn.Module, config: BenchmarkConfig, *, input_shape: Sequence[int],
                  calibration: Sequence[torch.Tensor], out_dir: str | Path, validation: torch.Tensor | None = None,
                  images: EncodedImages | None = None, preprocessing: Preprocessing | None = None,
                  model_name: str = "model", run_dir: str | Path | None = None) -> BenchmarkReport:
    """`BenchmarkSession(...).run()`: the whole benchmark in one call (arguments as the session's)."""
    return BenchmarkSession(model, config, input_shape=input_shape, calibration=calibration, out_dir=out_dir,
                            validation=validation, images=images, preprocessing=preprocessing,
                            model_name=model_name, run_dir=run_dir).run()
