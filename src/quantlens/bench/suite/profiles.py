"""Per-operator profiles of the session's `profile` pairs: "why is INT8 (not) faster?"."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from quantlens import events
from quantlens.bench.notes import BenchmarkNote
from quantlens.bench.profile import ProfileComparison, compare_profiles, profile_runner
from quantlens.bench.suite.inputs import cycled
from quantlens.bench.suite.prepare import PreparedBackend
from quantlens.recipes.benchmark import BenchmarkConfig


def run_profiles(config: BenchmarkConfig, prepared: Mapping[str, PreparedBackend],
                 images: torch.Tensor) -> tuple[list[ProfileComparison], list[BenchmarkNote]]:
    """(profile comparisons, notes on the pairs skipped); each pair profiled on `images`
    (n, C, H, W) cycled to `config.profile_batch` images."""
    results: list[ProfileComparison] = []
    notes: list[BenchmarkNote] = []
    batch = cycled(images, config.profile_batch)  # (profile_batch, C, H, W)
    for baseline, candidate in config.profile:
        pair = f"profile {baseline} vs {candidate} skipped"
        missing = [name for name in (baseline, candidate) if name not in prepared]
        if missing:
            notes.append(BenchmarkNote("skipped", f"{pair}: {', '.join(missing)} not ready"))
            continue
        too_slow = [name for name in (baseline, candidate)
                    if prepared[name].seconds_per_image * config.profile_batch > config.max_call_seconds]
        if too_slow:
            notes.append(BenchmarkNote("skipped", f"{pair}: a call of {', '.join(too_slow)} at batch "
                                                  f"{config.profile_batch} is estimated over max_call_seconds "
                                                  f"{config.max_call_seconds:g}"))
            continue
        events.note(f"  profiling {baseline} vs {candidate} at batch {config.profile_batch}")
        results.append(compare_profiles(profile_runner(prepared[baseline].runner, batch, runs=config.profile_runs),
                                        profile_runner(prepared[candidate].runner, batch, runs=config.profile_runs)))
    return results, notes
