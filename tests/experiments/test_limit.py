"""`eval.max_samples` / `--limit N`: a stratified, seeded evaluation subset, recorded in data.json,
drawn after calibration and selection samples are set aside."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantlens import events
from quantlens.data import load_source
from quantlens.data.source import ImageSource, default_normalization
from quantlens.errors import ConfigError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.sampling import _per_class_counts, limit_samples
from quantlens.experiments.spec import spec_from_dict

SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}
NO_ANALYSIS = {"layerwise_samples": 0, "compliance_samples": 0}


def _toy(counts: list[int]) -> ImageSource:
    """Classes of the given sizes, interleaved in the data's order."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    labels = labels[np.random.default_rng(1).permutation(len(labels))]
    n = len(labels)
    return ImageSource(name="toy", spec="toy", images=np.zeros((n, 2, 2, 1), np.uint8), labels=labels,
                       ids=[f"{i:04d}" for i in range(n)], class_names=[f"c{c}" for c in range(len(counts))],
                       channels=1, normalization=default_normalization(1))


def _spec(root, **blocks):
    values = {"name": "t", "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(root)}}
    values.update(blocks)
    return spec_from_dict(values)


def _run(spec) -> tuple[dict, list[str]]:
    """data.json of a run of `spec`, and the notes and warnings it emitted."""
    seen: list = []
    with events.listening(seen.append):
        outcome = run_experiment(spec)
    notes = [e.text for e in seen if isinstance(e, events.Note)]
    return json.loads((outcome.run_dir / "data.json").read_text()), notes


# --- the subset itself -------------------------------------------------------------------------------

def test_shares_are_proportional_and_sum_to_the_limit():
    rng = np.random.default_rng(0)
    for _ in range(300):
        available = rng.integers(1, 60, size=rng.integers(2, 12))
        limit = int(rng.integers(1, available.sum()))
        take = _per_class_counts(available, limit)
        assert take.sum() == limit and np.all(take <= available) and np.all(take >= 0)
        if limit >= len(available):
            assert np.all(take >= 1)
        else:
            assert np.count_nonzero(take) == limit  # one each for as many classes as the limit allows
        if np.all(available * limit / available.sum() >= 1):  # nobody raised to one: within one of the share
            assert np.all(np.abs(take - available * limit / available.sum()) < 1)


def test_small_classes_keep_one_sample_and_the_largest_come_first_when_short():
    assert _per_class_counts(np.array([1000] + [1] * 9), 10).tolist() == [1] * 10
    assert _per_class_counts(np.array([100, 1, 1]), 3).tolist() == [1, 1, 1]
    assert _per_class_counts(np.array([100, 1, 5]), 2).tolist() == [1, 0, 1]
    assert _per_class_counts(np.array([60, 30, 10]), 10).tolist() == [6, 3, 1]


def test_subset_is_stratified_seeded_and_in_the_data_order():
    source = load_source("digits")
    pool = np.arange(len(source))
    chosen, record = limit_samples(source, pool, 200, seed=0)
    assert len(chosen) == 200 and len(set(chosen.tolist())) == 200
    assert np.all(np.diff(chosen) > 0)  # the data's order
    counts = np.bincount(source.labels[chosen], minlength=10)
    shares = np.bincount(source.labels, minlength=10) * 200 / len(source)
    assert np.all(np.abs(counts - shares) < 1)
    assert record["class_counts"] == {str(c): int(n) for c, n in enumerate(counts)}
    assert (record["requested"], record["n"], record["of"], record["seed"]) == (200, 200, len(source), 0)
    assert record["indices"] == chosen.tolist()

    again, _ = limit_samples(source, pool[::-1], 200, seed=0)  # the pool's order does not matter
    other, _ = limit_samples(source, pool, 200, seed=1)
    assert np.array_equal(chosen, again) and not np.array_equal(chosen, other)
    picked = chosen[source.labels[chosen] == 0]  # a seeded draw within the class, not its first files
    assert not np.array_equal(picked, np.flatnonzero(source.labels == 0)[:len(picked)])


def test_a_class_draw_depends_on_the_seed_and_its_share_only():
    source = _toy([40, 40, 40])
    small, _ = limit_samples(source, np.arange(120), 30, seed=7)
    large, _ = limit_samples(source, np.arange(120), 60, seed=7)
    assert set(small) <= set(large)  # equal classes: every share grows, so the subsets nest
    negative, _ = limit_samples(source, np.arange(120), 30, seed=-7)
    assert len(negative) == 30 and not np.array_equal(negative, small)


def test_a_limit_at_or_above_the_pool_keeps_every_sample():
    source = _toy([5, 3])
    pool = np.arange(2, 8)
    chosen, record = limit_samples(source, pool, 50, seed=0)
    assert chosen.tolist() == pool.tolist() and (record["n"], record["of"], record["requested"]) == (6, 6, 50)


# --- in a run: data.json, the terminal, calibration never overlapping ----------------------------------

def test_run_evaluates_the_subset_and_records_it(tmp_path):
    spec = _spec(tmp_path, eval={"max_samples": 300}, analysis=NO_ANALYSIS,
                 quantization=[{"format": "int8", "calibration_samples": 100}])
    data, notes = _run(spec)
    limit, calib = data["limit"], data["calibration"]
    # digits has no test split: calibration is held out of all 1797 samples first, the limit draws from the rest
    assert calib["n"] == 100 and limit["of"] == 1797 - 100 and limit["n"] == data["eval_split"]["n"] == 300
    assert not set(limit["indices"]) & set(calib["indices"])
    assert data["eval_split"]["class_counts"] == limit["class_counts"]
    assert sum(limit["class_counts"].values()) == 300 and min(limit["class_counts"].values()) >= 29
    assert "a stratified 300 of the 1697 samples" in data["eval_split"]["reason"]
    assert any(n.startswith("evaluating a stratified 300 of the 1697 samples of split `all`") for n in notes), notes

    unlimited, _ = _run(_spec(tmp_path, analysis=NO_ANALYSIS,
                              quantization=[{"format": "int8", "calibration_samples": 100}]))
    assert unlimited["calibration"]["indices"] == calib["indices"]  # the limit never moves calibration
    assert unlimited["limit"] is None and unlimited["eval_split"]["n"] == 1697


def test_run_is_deterministic_and_follows_the_seed(tmp_path):
    first, _ = _run(_spec(tmp_path, eval={"max_samples": 100}))
    again, _ = _run(_spec(tmp_path, eval={"max_samples": 100}))
    other, _ = _run(_spec(tmp_path, seed=3, eval={"max_samples": 100}))
    assert first["limit"]["indices"] == again["limit"]["indices"] != other["limit"]["indices"]
    assert other["limit"]["seed"] == 3


def test_with_selection_the_limit_applies_to_the_confirmation_split(tmp_path):
    spec = _spec(tmp_path, eval={"max_samples": 200}, analysis=NO_ANALYSIS,
                 selection={"calibration_per_class": 4, "selection_per_class": 10},
                 quantization=[{"format": "int8"}])
    data, notes = _run(spec)
    limit = data["limit"]
    assert data["eval_split"]["name"] == "confirmation"
    assert limit["of"] == 1797 - 140 and limit["n"] == 200
    evaluated = set(limit["indices"])
    assert not evaluated & set(data["calibration"]["indices"]) and not evaluated & set(data["selection"]["indices"])
    assert any("of the confirmation split" in n for n in notes), notes


def test_a_limit_larger_than_the_pool_uses_every_sample_and_says_so(tmp_path):
    data, notes = _run(_spec(tmp_path, eval={"max_samples": 5000}))
    assert data["capped"]["eval.max_samples"] == {"requested": 5000, "used": 1797}
    assert data["limit"]["n"] == data["eval_split"]["n"] == 1797
    assert "eval.max_samples asks for 5000 samples; 1797 exist and are used (data.json: capped)" in notes


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -3, 2.5, "100", True])
def test_the_config_refuses_what_is_not_a_positive_count(value):
    with pytest.raises(ConfigError, match=r"^config: eval\.max_samples: ") as caught:
        spec_from_dict({"eval": {"max_samples": value}})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("command", [
    ["eval", "--model", "compact_cnn", "--data", "digits"],
    ["simulate", "--model", "compact_cnn", "--data", "digits"],
    ["bench", "--model", "compact_cnn", "--data", "digits", "--eval"],
    ["train", "--model", "compact_cnn", "--data", "digits"],
    ["run"],
])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_cli_limit_below_one_is_one_line_and_exit_2(cli, tmp_path, command, value):
    result = cli(*command, "--limit", value, "--out", tmp_path / "runs")
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "'--limit'" in result.error_lines[0]
    assert not (tmp_path / "runs").exists()


def test_cli_eval_says_what_it_evaluates(cli, tmp_path):
    result = cli("eval", "--model", "compact_cnn", "--data", "digits", "--limit", "150", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "evaluating a stratified 150 of the 1797 samples of split `all`" in result.err
    (run,) = tmp_path.glob("*-eval-*")
    data = json.loads((run / "data.json").read_text())
    assert data["limit"]["n"] == 150 and json.loads((run / "metrics.json").read_text())["n"] == 150


def test_run_takes_limit_as_an_override(cli, tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("data: {source: digits}\nmodel: {name: compact_cnn, options: {widths: [8, 16, 16]}}\n"
                      "eval: {max_samples: 400}\n")
    result = cli("run", config, "--limit", "120", "--out", tmp_path / "runs")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").glob("*-experiment-*")
    assert json.loads((run / "data.json").read_text())["limit"]["n"] == 120


def test_only_the_samples_a_run_reads_are_prepared_and_the_figures_do_not_change(tmp_path, monkeypatch):
    """With a limit, the evaluated and calibration samples are prepared at model size, not the whole data;
    a sample's predictions are the same as when every sample is prepared."""
    from quantlens.data import loader

    prepared: list[int] = []
    original = loader.to_model_layout

    def counting(images, preprocessing, *args, **kwargs):
        prepared.append(len(images))
        return original(images, preprocessing, *args, **kwargs)

    monkeypatch.setattr(loader, "to_model_layout", counting)
    quantization = [{"format": "int8", "calibration_samples": 100}]
    limited = run_experiment(_spec(tmp_path, eval={"max_samples": 300}, analysis=NO_ANALYSIS,
                                   quantization=quantization))
    assert prepared == [300 + 100]
    whole = run_experiment(_spec(tmp_path, analysis=NO_ANALYSIS, quantization=quantization))
    assert prepared[-1] == 1797
    for name in ("predictions.npz", "quantization/01-w_int8_channel_in_int8_tensor/predictions.npz"):
        with np.load(limited.run_dir / name) as a, np.load(whole.run_dir / name) as b:
            order = {int(i): k for k, i in enumerate(b["indices"])}
            rows = [order[int(i)] for i in a["indices"]]
            np.testing.assert_array_equal(a["probs"], b["probs"][rows])
