"""Acceptance checks of the foundation on the real shared data (skipped without ../shared)."""

from __future__ import annotations

import pytest

from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict


@pytest.mark.slow
def test_resnet20_on_cifar10_jpeg_matches_the_reference(shared_path, tmp_path):
    spec = spec_from_dict({
        "data": {"source": f"imagefolder:{shared_path('data/cifar10-test-jpeg')}"},
        "model": {"name": "resnet20_cifar",
                  "weights": str(shared_path("models/resnet20-cifar10/resnet20-12fca82f.th"))},
        "output": {"root": str(tmp_path)}})
    outcome = run_experiment(spec)
    assert outcome.evaluation.split == "all" and outcome.evaluation.metrics.n == 10000
    assert abs(outcome.evaluation.metrics.top1 - 0.810) <= 0.003  # reference: 81.0% on these JPEGs


@pytest.mark.slow
def test_brain_mri_trains_and_reports_auroc(shared_path, tmp_path):
    spec = spec_from_dict({
        "data": {"source": f"imagefolder:{shared_path('data/brain-mri')}", "image_size": 48, "channels": 1,
                 "test_fraction": 0.2},
        "model": {"name": "compact_cnn"},
        "train": {"enabled": True, "epochs": 8, "batch_size": 16},
        "output": {"root": str(tmp_path)}})
    outcome = run_experiment(spec)
    m = outcome.evaluation.metrics
    assert outcome.evaluation.split == "test" and m.n == 51
    assert m.auroc is not None and m.auroc > 0.75
    assert m.positive_class == "yes"
