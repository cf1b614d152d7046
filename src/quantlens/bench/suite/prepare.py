"""Preparing one backend for a session, and checking it against eager FP32.

A backend that cannot run here (missing package, no GPU) or fails to prepare (an export that
disagrees with torch, an untraceable model) becomes an outcome with the reason; the session goes
on with the others. A ready one is checked on the validation images: top-1 agreement with eager
FP32 and the largest logit difference, so a fast but wrong backend is visible next to its speed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from quantlens import events
from quantlens.backends import BackendError, Runner, RunnerInfo, Target, get_backend
from quantlens.bench.memory import current_rss_bytes, model_file_sizes
from quantlens.bench.suite.inputs import RunPaths
from quantlens.bench.suite.results import Agreement, BackendOutcome
from quantlens.recipes.benchmark import BenchmarkConfig


@dataclass
class PreparedBackend:
    """A ready backend while the session goes on: its runner and its latest per-image time
    estimate (seconds), updated by every measured call so the next batch size can be foreseen."""

    runner: Runner
    seconds_per_image: float


def timed_call(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes (an estimate, not a measurement: one sample, no warm-up)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check_agreement(runner: Runner, images: torch.Tensor, reference: torch.Tensor, limited: bool) -> Agreement:
    """images: (n, C, H, W); reference: eager FP32 logits (N >= n, classes) of the same images."""
    output = runner.run(images).float().cpu()  # (n, classes)
    expected = reference[:images.shape[0]]  # (n, classes)
    diff = (output - expected).abs()
    return Agreement(samples=int(images.shape[0]),
                     top1_agreement=float((output.argmax(1) == expected.argmax(1)).float().mean()),
                     max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                     reference_max_abs=float(reference.abs().max()), limited_by_time=limited)


def _relative_info(info: RunnerInfo, paths: RunPaths) -> RunnerInfo:
    """`info` with its model files relative to the run folder and no absolute path in its notes."""
    return dataclasses.replace(info, model_files=tuple(paths.relative(f) for f in info.model_files),
                               notes=tuple(paths.scrub(note) for note in info.notes))


def prepare_backend(name: str, model: nn.Module, config: BenchmarkConfig, target: Target,
                    calibration: list[torch.Tensor], images: torch.Tensor, reference: torch.Tensor,
                    work_dir: Path, paths: RunPaths) -> tuple[BackendOutcome, PreparedBackend | None]:
    """Prepare backend `name` (files under `work_dir`) and check it: (outcome, the ready backend or None).

    images: (n, C, H, W) validation images; reference: eager FP32 logits of them, (n, classes).
    """
    backend = get_backend(name)
    ok, reason = backend.available(target)
    if not ok:
        events.note(f"  {name}: unavailable: {reason}")
        return BackendOutcome(name, "unavailable", paths.scrub(reason), backend.description), None
    rss_before = current_rss_bytes()
    start = time.perf_counter()
    try:
        runner = backend.prepare(model, images[:8], calibration, work_dir, target)
    except BackendError as error:
        events.note(f"  {name}: failed: {error}")
        return BackendOutcome(name, "failed", paths.scrub(str(error)), backend.description), None
    prepare_seconds = time.perf_counter() - start
    rss_increase = max(0, current_rss_bytes() - rss_before)
    try:
        one = images[:1]
        runner.run(one)  # lazy initialisation (and compilation at batch 1) before the estimate
        seconds_per_image = timed_call(lambda: runner.run(one))
        # As many images as fit in max_call_seconds at the estimated rate, at least one.
        count = min(images.shape[0], max(1, int(config.max_call_seconds / max(seconds_per_image, 1e-9))))
        agreement = check_agreement(runner, images[:count], reference, limited=count < images.shape[0])
    except BaseException:
        runner.close()  # the session never saw this runner: close it here
        raise
    info = runner.info
    file_bytes = sum(model_file_sizes(path).total_bytes for path in info.model_files)  # absolute paths, here
    events.note(f"  {name}: ready in {prepare_seconds:.1f} s; ran {info.precision_label} on {info.device} "
                f"({info.provider}, {info.threads} threads); top-1 agreement with FP32 "
                f"{agreement.top1_agreement:.1%} on {agreement.samples} images, max |dlogit| "
                f"{agreement.max_abs_diff:.3g}")
    for note in info.notes:
        events.note(f"      - {note}")
    outcome = BackendOutcome(name, "ready", "", backend.description, _relative_info(info, paths), prepare_seconds,
                             rss_increase, file_bytes, info.parameter_bytes, agreement)
    return outcome, PreparedBackend(runner, seconds_per_image)
