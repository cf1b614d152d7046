"""The example experiment files validate against the schema; old quantization entries still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlens.experiments.spec import load_spec_with_notes

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path):
    spec, notes = load_spec_with_notes(path)
    assert spec.version == 1 and all(q.version == 2 for q in spec.quantization)
    assert len({q.label for q in spec.quantization}) == len(spec.quantization)
    assert all(note.startswith("quantization.") for note in notes)


def test_a_version_1_example_is_kept_and_migrated():
    migrated = {path.name: notes for path in EXAMPLES for notes in [load_spec_with_notes(path)[1]] if notes}
    assert "cifar10-resnet20-fp8-mx-attribution.yaml" in migrated
    assert "cifar10-resnet20-formats.yaml" not in migrated  # written in version 2
