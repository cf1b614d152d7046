"""End-to-end runs on digits: run folders, checkpoints, sidecars, cross-validation, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from quantlens.errors import DataError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict
from quantlens.metrics import Predictions

SMALL_MODEL = {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}}


def _spec(root, **blocks):
    values = {"name": "t", "data": {"source": "digits"}, "model": SMALL_MODEL, "output": {"root": str(root)}}
    for key, block in blocks.items():
        values[key] = {**values.get(key, {}), **block}
    return spec_from_dict(values)


def test_train_then_evaluate_with_the_same_test_split(tmp_path):
    trained = run_experiment(_spec(tmp_path, train={"enabled": True, "epochs": 3}))
    run = trained.run_dir
    assert not run.name.endswith(".partial")
    for name in ("config.yaml", "environment.json", "metrics.json", "predictions.npz", "data.json", "run.json",
                 "history.json", "checkpoints/best.safetensors", "checkpoints/best.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["top1"] > 0.5
    assert json.loads((run / "training.json").read_text())["epochs_run"] == 3
    env = json.loads((run / "environment.json").read_text())
    assert env["seeds"] == {"seed": 0, "split_seed": 0} and env["versions"]["torch"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["image_size"] == 8 and resolved["data"]["channels"] == 1

    evaluated = run_experiment(_spec(tmp_path, model={"weights": str(run / "checkpoints/best.safetensors")}))
    first = Predictions.load(run / "predictions.npz")
    again = Predictions.load(evaluated.run_dir / "predictions.npz")
    assert np.array_equal(first.indices, again.indices)  # the sidecar's split: same held-out samples
    np.testing.assert_allclose(first.probs, again.probs, atol=1e-6)
    reason = json.loads((evaluated.run_dir / "data.json").read_text())["eval_split"]["reason"]
    assert "checkpoint's training run" in reason


def test_training_is_deterministic(tmp_path):
    a = run_experiment(_spec(tmp_path / "a", train={"enabled": True, "epochs": 2}))
    b = run_experiment(_spec(tmp_path / "b", train={"enabled": True, "epochs": 2}))
    assert a.evaluation.metrics.nll == b.evaluation.metrics.nll


def test_cross_validation_folds(tmp_path):
    outcome = run_experiment(_spec(tmp_path, train={"enabled": True, "epochs": 1, "folds": 3}))
    cv = json.loads((outcome.run_dir / "cross_validation.json").read_text())
    assert len(cv["per_fold"]) == 3 and cv["val_mean_std"]["top1"]["n_folds"] == 3
    assert len(list((tmp_path / "cv_splits").glob("*kfold3*.json"))) == 1
    assert all((outcome.run_dir / f"folds/{k}/best.safetensors").is_file() for k in range(3))


def test_user_mistake_leaves_no_run_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        run_experiment(_spec(tmp_path, data={"source": f"imagefolder:{tmp_path / 'missing'}"}))
    assert list(tmp_path.iterdir()) == []


def test_failed_run_stays_partial(tmp_path, monkeypatch):
    import quantlens.experiments.stages.evaluate as evaluate

    def broken_predict(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(evaluate, "predict", broken_predict)  # a failure after the run folder exists
    with pytest.raises(RuntimeError):
        run_experiment(_spec(tmp_path))
    (partial,) = list(tmp_path.glob("*.partial"))
    status = json.loads((partial / "run.json").read_text())
    assert status["status"] == "failed" and "evaluation broke" in status["error"]
    assert not (partial / "metrics.json").exists()
