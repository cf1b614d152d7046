"""Model outputs: logits, probabilities or log-probabilities, detected or declared, never softmaxed twice.

The user model here is a nearest-centroid classifier of scikit-learn's digits written as a linear
layer followed by a Softmax: it returns probabilities, is confident (mean top probability ~0.73)
and accurate (~0.90) without training. A second softmax would report its confidence as ~0.18.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import fx, nn

from quantlens.atomic import read_json
from quantlens.data import PreparedData, load_source
from quantlens.data.transforms import Preprocessing
from quantlens.passes import functional_to_modules
from quantlens.train import adapt_outputs, detect_output_kind, predict, predict_with, to_probabilities
from quantlens.train.outputs import declared_output_kind, resolve_output_kind

CENTROID_MODEL = '''
import threading

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

TEMPERATURE = 0.5


def _centroids():
    digits = load_digits()
    z = ((np.rint(digits.images * 255 / 16) / 255 - 0.5) / 0.5).reshape(len(digits.images), -1)
    return np.stack([z[digits.target == k].mean(0) for k in range(10)]).astype(np.float32)


def centroid_classifier(probabilities=True):
    c = torch.from_numpy(_centroids())  # (10, 64)
    linear = nn.Linear(64, 10)
    with torch.no_grad():
        linear.weight.copy_(TEMPERATURE * c)
        linear.bias.copy_(-0.5 * TEMPERATURE * (c * c).sum(1))
    layers = [nn.Flatten(), linear] + ([nn.Softmax(dim=1)] if probabilities else [])
    return nn.Sequential(*layers)


class SessionHolder(nn.Module):
    """Holds something that cannot be copied, as a module wrapping a runtime session does."""

    def __init__(self):
        super().__init__()
        self.net = centroid_classifier()
        self.lock = threading.Lock()

    def forward(self, x):
        with self.lock:
            return self.net(x)


def session_holder():
    return SessionHolder()
'''


@pytest.fixture
def user_models(tmp_path) -> Path:
    path = tmp_path / "centroids.py"
    path.write_text(CENTROID_MODEL)
    return path


def _run_dir(result) -> Path:
    assert result.code == 0, result.err
    return Path(re.search(r"run record: (\S+)", result.out).group(1))


def _own_probabilities(user_models: Path, indices: np.ndarray) -> np.ndarray:
    """The model's own probabilities on the digits, preprocessed as quantlens does (mean 0.5, std 0.5)."""
    from sklearn.datasets import load_digits

    namespace: dict = {}
    exec(compile(user_models.read_text(), str(user_models), "exec"), namespace)
    digits = load_digits()
    z = torch.from_numpy(((np.rint(digits.images * 255 / 16) / 255 - 0.5) / 0.5).astype(np.float32))[:, None]
    with torch.no_grad():
        return namespace["centroid_classifier"]()(z[indices]).numpy()


def test_detection():
    torch.manual_seed(0)
    logits = torch.randn(32, 10) * 3
    assert detect_output_kind(logits)[0] == "logits"
    assert detect_output_kind(torch.softmax(logits, 1))[0] == "probabilities"
    assert detect_output_kind(torch.log_softmax(logits, 1))[0] == "log_probabilities"
    assert detect_output_kind(torch.softmax(logits, 1).half().float())[0] == "probabilities"  # FP16 rounding
    assert detect_output_kind(torch.rand(32, 10))[0] == "logits"  # in [0, 1], but rows do not sum to 1
    assert detect_output_kind(torch.eye(10))[0] == "probabilities"  # one-hot rows
    kind, _, disagreement = resolve_output_kind("logits", "declared (model.output)", torch.softmax(logits, 1))
    assert kind == "logits" and "looks like probabilities" in disagreement


def test_probabilities_get_no_second_softmax():
    p = torch.tensor([[0.95] + [0.05 / 9] * 9])
    assert torch.equal(to_probabilities(p, "probabilities"), p / p.sum(1, keepdim=True))
    torch.testing.assert_close(to_probabilities(p.log(), "log_probabilities"), p)
    assert to_probabilities(p, "logits")[0, 0] < 0.25  # what the old code did to such a model
    with pytest.raises(ValueError, match="output kind"):
        to_probabilities(p, "scores")


class Branching(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        if y.sum() > 1e9:
            y = y * 0
        return torch.softmax(y, dim=1)


@pytest.mark.parametrize("make", [lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), Branching])
def test_adapted_model_returns_log_probabilities_through_copies_and_traces(make):
    torch.manual_seed(0)
    model = make()
    keys = list(model.state_dict())
    x = torch.randn(5, 4)
    expected = model(x).detach()
    adapted, how = adapt_outputs(model, "probabilities")
    assert "no second softmax" in how and declared_output_kind(adapted) == "log_probabilities"
    assert list(adapted.state_dict()) == keys  # layer names unchanged: exclude patterns still match
    assert isinstance(adapted, fx.GraphModule) == (make is not Branching)
    for candidate in (adapted, copy.deepcopy(adapted), functional_to_modules(adapted).model):
        torch.testing.assert_close(torch.softmax(candidate(x), 1), expected)


def test_logits_models_are_left_alone():
    model = nn.Linear(4, 3)
    assert adapt_outputs(model, "logits")[0] is model and adapt_outputs(model, "log_probabilities")[0] is model


def test_predict_with_declared_kinds():
    source = load_source("digits")
    data = PreparedData.from_source(source, Preprocessing(1, (8, 8), source.normalization))
    idx = np.arange(20)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    from_logits = predict(net, data, idx, description=None)
    from_probs = predict_with(lambda x: torch.softmax(net(x), 1), data, idx, description=None,
                              output_kind="probabilities")
    from_log = predict_with(lambda x: torch.log_softmax(net(x), 1), data, idx, description=None,
                            output_kind="log_probabilities")
    np.testing.assert_allclose(from_probs.probs, from_logits.probs, atol=1e-6)
    np.testing.assert_allclose(from_log.probs, from_logits.probs, atol=1e-6)


def test_eval_of_a_probabilities_model_reports_its_own_confidence(cli, run_root, user_models):
    run = _run_dir(cli("eval", "--model", f"python:{user_models}:centroid_classifier", "--data", "digits",
                       "--device", "cpu"))
    metrics = read_json(run / "metrics.json", "metrics")
    with np.load(run / "predictions.npz") as z:
        idx, probs = z["indices"], z["probs"]
    own = _own_probabilities(user_models, idx)
    np.testing.assert_allclose(probs, own, atol=1e-5)
    assert metrics["mean_confidence"] == pytest.approx(own.max(1).mean(), abs=1e-5)
    assert metrics["mean_confidence"] > 0.7 and metrics["top1"] > 0.85
    assert metrics["model"]["output"]["kind"] == "probabilities"
    assert metrics["model"]["output"]["origin"].startswith("detected")
    # declared logits: the declaration wins (with a warning), and the second softmax is back
    declared = cli("eval", "--model", f"python:{user_models}:centroid_classifier", "--data", "digits",
                   "--device", "cpu", "--output-kind", "logits")
    assert "looks like probabilities" in declared.err
    assert read_json(_run_dir(declared) / "metrics.json", "metrics")["mean_confidence"] < 0.25


def test_simulating_a_probabilities_model_keeps_its_confidence(cli, run_root, user_models):
    run = _run_dir(cli("simulate", "--model", f"python:{user_models}:centroid_classifier", "--data", "digits",
                       "--device", "cpu", "--format", "int8", "--output-kind", "probabilities"))
    summary = read_json(run / "quantization" / "summary.json", "summary")
    (row,) = summary["formats"]
    assert summary["fp32"]["mean_confidence"] > 0.7
    assert abs(row["mean_confidence"] - summary["fp32"]["mean_confidence"]) < 0.02
    assert row["quantized_layers"] >= 1


def test_a_model_that_cannot_be_copied_is_one_line(cli, run_root, user_models):
    model = f"python:{user_models}:session_holder"
    result = cli("simulate", "--model", model, "--data", "digits", "--device", "cpu", "--format", "int8")
    assert result.code == 2 and len(result.error_lines) == 1 and "Traceback" not in result.err
    assert "cannot be copied" in result.error_lines[0] and "lock" in result.error_lines[0]
    assert cli("eval", "--model", model, "--data", "digits", "--device", "cpu").code == 0  # evaluation copies nothing
