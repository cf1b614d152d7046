"""The example experiment files validate against the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlens.experiments.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path):
    assert load_spec(path).version == 1
