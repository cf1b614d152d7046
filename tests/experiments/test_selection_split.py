"""The three-way split (calibration / selection / confirmation) and the choice made on selection only."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens.data.source import ImageSource, default_normalization
from quantlens.errors import DataError
from quantlens.experiments.sampling import three_way_split
from quantlens.experiments.spec import spec_from_dict
from quantlens.experiments.stages.simulate import FormatRow, choose


def _source(labels: list[int]) -> ImageSource:
    n = len(labels)
    return ImageSource(name="toy", spec="toy", images=np.zeros((n, 2, 2, 1), np.uint8), labels=np.array(labels),
                       ids=[f"{i:03d}" for i in range(n)], class_names=["a", "b"], channels=1,
                       normalization=default_normalization(1))


def test_parts_follow_the_data_order_class_by_class():
    labels = [0, 1] * 10  # interleaved: class 0 at even indices, class 1 at odd ones
    spec = spec_from_dict({"selection": {"calibration_per_class": 2, "selection_per_class": 3}})
    calib, selection, confirmation, origin = three_way_split(spec, _source(labels), np.arange(20))
    assert calib.tolist() == [0, 1, 2, 3]
    assert selection.tolist() == [4, 5, 6, 7, 8, 9]
    assert confirmation.tolist() == list(range(10, 20))
    assert "first 2" in origin and "next 3" in origin


def test_only_the_evaluation_pool_is_cut():
    labels = [0, 1] * 10
    spec = spec_from_dict({"selection": {"calibration_per_class": 1, "selection_per_class": 1}})
    pool = np.arange(6, 20)  # e.g. the test split: earlier samples belong to training
    calib, selection, confirmation, _ = three_way_split(spec, _source(labels), pool)
    assert calib.tolist() == [6, 7] and selection.tolist() == [8, 9]
    assert set(confirmation) == set(range(10, 20))


def test_a_class_too_small_to_confirm_is_refused():
    spec = spec_from_dict({"selection": {"calibration_per_class": 5, "selection_per_class": 5}})
    with pytest.raises(DataError, match="class 'a' has 10 evaluation samples.*leaves none to confirm"):
        three_way_split(spec, _source([0, 1] * 10), np.arange(20))


def test_selection_needs_calibration():
    with pytest.raises(Exception, match="calibration_per_class: must be > 0"):
        spec_from_dict({"selection": {"selection_per_class": 5}})


def _row(label: str, value: float | None) -> FormatRow:
    return FormatRow.from_dict({"label": label, "selection_value": value})


def test_choice_is_the_best_selection_value_first_on_ties():
    rows = (_row("a", 0.80), _row("b", 0.82), _row("c", 0.82))
    record = choose(rows, "top1", 2000, 0.81)
    assert record["chosen"] == "b" and record["n"] == 2000 and record["fp32"] == 0.81


def test_kl_is_chosen_lowest_and_agreement_highest():
    rows = (_row("a", 0.004), _row("b", 0.002), _row("c", 0.003))
    kl = choose(rows, "kl", 2000, 0.0)
    assert kl["chosen"] == "b" and kl["rule"].startswith("lowest KL")
    assert choose(rows, "agreement", 2000, 1.0)["chosen"] == "a"


def test_fidelity_metrics_are_accepted_by_the_spec():
    spec = spec_from_dict({"selection": {"calibration_per_class": 1, "selection_per_class": 1, "metric": "kl"}})
    assert spec.selection.metric == "kl"
    with pytest.raises(Exception, match="metric"):
        spec_from_dict({"selection": {"calibration_per_class": 1, "metric": "fidelity"}})
