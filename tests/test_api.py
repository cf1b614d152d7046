"""The one-call Python API (quantlens.quantize / evaluate / compare / benchmark) on PyTorch data."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import quantlens
from quantlens import events
from quantlens.bench.suite import BenchmarkReport
from quantlens.errors import ConfigError, DataError, ModelError, QuantlensError
from quantlens.metrics.proportions import mcnemar_test
from quantlens.nn import QuantWrapper, calibrate
from quantlens.recipes import QuantizationConfig
from quantlens.workflows import post_training_quantize

N, CLASSES = 96, 4


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES)).eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 8, 8, generator=generator)  # (N, 3, 8, 8)
    y = torch.randint(0, CLASSES, (N,), generator=generator)  # (N,)
    return x, y


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


class DictSamples(Dataset):
    """A map-style dataset of {'pixel_values', 'labels'} samples, as Hugging Face datasets yield them."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": int(self.y[i])}


class Streamed(IterableDataset):
    """An iterable dataset of (x, y, extra) samples, without a length."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.x)):
            yield self.x[i], self.y[i], f"sample-{i}"


# ---- quantize -----------------------------------------------------------------------------------


def test_quantize_dataloader_of_xy_batches_calibrates_like_the_workflow(data):
    x, y = data
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = quantlens.quantize(model, "int8", DataLoader(TensorDataset(x, y), batch_size=32))
    # the same recipe through the workflow, on the bare input batches: identical scales, identical outputs
    expected = post_training_quantize(model, QuantizationConfig(format="int8"), list(x.split(32))).model
    assert any(isinstance(m, QuantWrapper) for m in qmodel.modules())
    assert not qmodel.training
    assert torch.equal(_outputs(qmodel, x), _outputs(expected, x))
    assert not torch.equal(_outputs(qmodel, x), _outputs(model, x))  # it did quantize
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched


@pytest.mark.parametrize("form", ["tensor", "dataset", "list_of_x", "dict_dataset", "dict_batches",
                                  "xy_extra", "iterable_dataset", "numpy_batches"])
def test_quantize_takes_every_data_form_alike(data, form):
    x, y = data
    calibration = {
        "tensor": x,
        "dataset": TensorDataset(x, y),
        "list_of_x": list(x.split(16)),
        "dict_dataset": DictSamples(x, y),
        "dict_batches": [{"img": b, "target": t} for b, t in zip(x.split(24), y.split(24), strict=True)],
        "xy_extra": DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=48),
        "iterable_dataset": Streamed(x, y),
        "numpy_batches": [(b.numpy(), t.numpy()) for b, t in zip(x.split(32), y.split(32), strict=True)],
    }[form]
    reference = quantlens.quantize(_model(), "int8", list(x.split(32)))
    qmodel = quantlens.quantize(_model(), "int8", calibration)
    # max observers: the ranges depend on the samples, not on how they were batched
    assert torch.equal(_outputs(qmodel, x), _outputs(reference, x))


def test_quantize_takes_the_recipes_calibration_samples_and_says_so(data):
    x, y = data
    notes: list[str] = []
    with events.listening(lambda e: notes.append(e.text) if isinstance(e, events.Note) else None):
        qmodel = quantlens.quantize(_model(), {"format": "int8", "calibration_samples": 40},
                                    DataLoader(TensorDataset(x, y), batch_size=32))
        quantlens.quantize(_model(), {"format": "int8", "calibration_samples": 500}, x)
    expected = post_training_quantize(_model(), QuantizationConfig(format="int8"), [x[:32], x[32:40]]).model
    assert torch.equal(_outputs(qmodel, x), _outputs(expected, x))
    assert any("calibrated on 40 samples" in n for n in notes)
    assert any("holds 96 samples, fewer than the recipe's calibration_samples (500)" in n for n in notes)


def test_quantize_recipe_as_dict_with_passes_equals_the_config(data):
    x, _ = data
    entry = {"format": "int4", "inputs": {"format": "int8"}, "weights": {"observer": "mse"},
             "passes": ["fold_bn", "bias_correction"]}
    from_dict = quantlens.quantize(_model(), entry, x)
    from_config = quantlens.quantize(_model(), QuantizationConfig.model_validate(entry), x)
    assert torch.equal(_outputs(from_dict, x), _outputs(from_config, x))
    assert not isinstance(from_dict[1], nn.BatchNorm2d)  # folded into the convolution


@pytest.mark.parametrize(("calibration", "message"), [
    (["a", "b"], "calibration_data yields str; expected a tensor batch (B, C, H, W), a tuple (x, y) or a dict"),
    (7, "calibration_data is int; expected a torch Dataset, a DataLoader"),
    ("images/", "calibration_data is str; expected a torch Dataset"),
    ([{"pixels": torch.zeros(2, 3, 8, 8)}], "yields a dict with keys 'pixels'; expected the inputs under one of "
                                            "'image', 'img', 'pixel_values', 'x'"),
    ([torch.zeros(2, 3, 8, 8, dtype=torch.uint8)], "inputs of a uint8 tensor of shape (2, 3, 8, 8); the model "
                                                   "takes floating-point tensors"),
    ([("x", 1)], "yields a tuple whose inputs are str"),
    ([()], "yields an empty tuple"),
    ([(torch.zeros(4, 3, 8, 8), torch.zeros(4, 10))], "labels of a float32 tensor of shape (4, 10) for 4 inputs"),
    ([(torch.zeros(4, 3, 8, 8), torch.tensor([0.0, 1, 2, 3]))], "labels of a float32 tensor of shape (4,); "
                                                                "expected integer class indices"),
    ([(torch.zeros(2, 3, 8, 8), torch.tensor([0, -1]))], "yields the label -1"),
    (torch.zeros(5), "a tensor of inputs needs a batch dimension first"),
    (DataLoader(TensorDataset(torch.zeros(4, 3, 8, 8)), batch_size=None), "DataLoader with batch_size=None"),
    ([], "calibration_data yields no samples"),
])
def test_quantize_refuses_unreadable_data_in_one_line(calibration, message):
    with pytest.raises(DataError) as info:
        quantlens.quantize(_model(), "int8", calibration)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_dataset_of_pil_images_is_refused_with_the_transform_named():
    from PIL import Image

    class Pictures(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return Image.new("RGB", (8, 8)), i

    with pytest.raises(DataError, match=r"yields samples of Image .*transform=ToTensor\(\)"):
        quantlens.quantize(_model(), "int8", Pictures())


def test_numpy_arrays_and_duck_typed_datasets_are_read_as_datasets(data):
    x, y = data

    class Indexable:  # samples by index and a length, not a torch Dataset (e.g. a Hugging Face dataset)
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int):
            return {"image": x[i].numpy(), "label": int(y[i])}

    reference = quantlens.quantize(_model(), "int8", x)
    assert torch.equal(_outputs(quantlens.quantize(_model(), "int8", x.numpy()), x), _outputs(reference, x))
    expected = quantlens.evaluate(_model(), TensorDataset(x, y))
    assert np.array_equal(quantlens.evaluate(_model(), Indexable()).predictions.probs, expected.predictions.probs)


def test_samples_of_different_shapes_are_refused_in_one_line():
    class Ragged(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return torch.zeros(3, 8 + i, 8)

    with pytest.raises(DataError, match=r"yields samples of a float32 tensor of shape \(3, 8, 8\) that cannot be "
                                         r"stacked into a batch \(stack expects each tensor to be equal size"):
        quantlens.quantize(_model(), "int8", Ragged())


@pytest.mark.parametrize(("recipe", "error", "message"), [
    ("fp7", ConfigError, "recipe: format: unknown number format 'fp7'; did you mean"),
    ({"format": "int8", "weights": {"mode": "diagonal"}}, ConfigError, "recipe: weights.mode"),
    ({"format": "int8", "calibration_sample": 5}, ConfigError, "recipe: unknown key 'calibration_sample'"),
    (8, ConfigError, "recipe is int; expected a QuantizationConfig, a dict"),
    ({"format": "int8", "deploy": ["onnxruntime"]}, ConfigError, "recipe.deploy: quantlens.quantize returns"),
])
def test_quantize_refuses_bad_recipes_in_one_line(data, recipe, error, message):
    with pytest.raises(error) as info:
        quantlens.quantize(_model(), recipe, data[0])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_core_calibration_refuses_tuples_in_one_line(data):
    x, y = data
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    with pytest.raises(DataError, match="calibration batches must be input tensors, got list"):
        post_training_quantize(_model(), QuantizationConfig(format="int8"), loader)
    qmodel = quantlens.quantize(_model(), "int8", x)
    with pytest.raises(DataError, match="calibrate takes batches of input tensors, got list"):
        calibrate(qmodel, loader)


# ---- evaluate -----------------------------------------------------------------------------------


def test_evaluate_returns_typed_frozen_metrics_that_match_the_model(data):
    x, y = data
    model = _model().train()
    result = quantlens.evaluate(model, DataLoader(TensorDataset(x, y), batch_size=40))
    assert model.training  # run in eval mode, left in the mode it was in
    model.eval()
    predicted = _outputs(model, x).argmax(dim=1)
    assert result.n == N
    assert result.metrics.top1 == pytest.approx(float((predicted == y).float().mean()))
    assert result.metrics.top5 is None  # 4 classes
    assert np.array_equal(result.predictions.labels, y.numpy())
    assert np.allclose(result.predictions.probs, torch.softmax(_outputs(model, x), 1).numpy(), atol=1e-6)
    assert result.class_names == ("0", "1", "2", "3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.metrics = None  # type: ignore[misc]


@pytest.mark.parametrize("form", ["dataset", "dict_dataset", "dict_batches", "labels_n_by_1", "iterable_dataset"])
def test_evaluate_gives_the_same_result_for_every_data_form(data, form):
    x, y = data
    model = _model()
    source = {
        "dataset": TensorDataset(x, y),
        "dict_dataset": DictSamples(x, y),
        "dict_batches": [{"image": b, "label": t} for b, t in zip(x.split(50), y.split(50), strict=True)],
        "labels_n_by_1": [(b, t[:, None]) for b, t in zip(x.split(50), y.split(50), strict=True)],
        "iterable_dataset": Streamed(x, y),
    }[form]
    expected = quantlens.evaluate(model, TensorDataset(x, y), batch_size=N)
    result = quantlens.evaluate(model, source, batch_size=32)
    assert np.array_equal(result.predictions.ids, expected.predictions.ids)
    assert np.allclose(result.predictions.probs, expected.predictions.probs, atol=1e-6)
    assert result.metrics.top1 == expected.metrics.top1


def test_evaluate_refuses_data_without_labels_and_labels_beyond_the_outputs(data):
    x, y = data
    with pytest.raises(DataError, match="yields inputs without labels; evaluate needs"):
        quantlens.evaluate(_model(), x)
    with pytest.raises(DataError, match="label 7, which is not a class of a model with 4 outputs"):
        quantlens.evaluate(_model(), [(x, torch.full((N,), 7))])
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        quantlens.evaluate(_model(), TensorDataset(x, y), batch_size=0)
    with pytest.raises(ConfigError, match="class_names lists 2 classes; the model outputs 4"):
        quantlens.evaluate(_model(), TensorDataset(x, y), class_names=["a", "b"])


def test_evaluate_reads_logits_of_output_objects_and_refuses_other_outputs(data):
    x, y = data

    class Output:  # as Hugging Face image classifiers return
        def __init__(self, logits: torch.Tensor) -> None:
            self.logits = logits

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module, wrap) -> None:
            super().__init__()
            self.inner, self.wrap = inner, wrap

        def forward(self, x: torch.Tensor):
            return self.wrap(self.inner(x))

    model = _model()
    expected = quantlens.evaluate(model, TensorDataset(x, y))
    wrapped = quantlens.evaluate(Wrapped(model, Output), TensorDataset(x, y))
    assert np.array_equal(wrapped.predictions.probs, expected.predictions.probs)
    with pytest.raises(ModelError, match="the model returns tuple; evaluate needs a tensor"):
        quantlens.evaluate(Wrapped(model, lambda t: (t,)), TensorDataset(x, y))
    with pytest.raises(ModelError, match=r"model output has shape \(32,\); expected \(32, classes\)"):
        quantlens.evaluate(Wrapped(model, lambda t: t[:, 0]), TensorDataset(x, y), batch_size=32)


# ---- compare ------------------------------------------------------------------------------------


def test_compare_gives_paired_statistics_of_the_two_results(data):
    x, y = data
    model = _model()
    reference = quantlens.evaluate(model, TensorDataset(x, y))
    candidate = quantlens.evaluate(quantlens.quantize(model, "int4", x), TensorDataset(x, y))
    result = quantlens.compare(reference, candidate)
    ref_right, cand_right = reference.predictions.correct, candidate.predictions.correct
    assert result.n == N and not result.reordered
    assert result.top1_delta_points == pytest.approx(100 * (cand_right.mean() - ref_right.mean()))
    low, high = result.top1_ci_points
    assert low <= result.top1_delta_points <= high
    expected_p = mcnemar_test(int((ref_right & ~cand_right).sum()), int((~ref_right & cand_right).sum())).exact_p
    assert result.mcnemar_p == expected_p
    agreement = (reference.predictions.predicted == candidate.predictions.predicted).mean()
    assert result.agreement == pytest.approx(agreement)
    assert "points [95% CI" in str(result) and f"(n = {N})" in str(result)
    assert result.to_dict()["n"] == N


def test_compare_matches_shuffled_samples_by_their_inputs(data):
    x, y = data
    model, qmodel = _model(), quantlens.quantize(_model(), "int4", x)
    in_order = quantlens.compare(quantlens.evaluate(model, TensorDataset(x, y)),
                                 quantlens.evaluate(qmodel, TensorDataset(x, y)))
    torch.manual_seed(3)
    shuffled = quantlens.compare(quantlens.evaluate(model, TensorDataset(x, y)),
                                 quantlens.evaluate(qmodel, DataLoader(TensorDataset(x, y), batch_size=16,
                                                                       shuffle=True)))
    assert shuffled.reordered
    assert shuffled.paired.table == in_order.paired.table
    assert shuffled.top1_ci_points == in_order.top1_ci_points


def test_compare_refuses_results_on_different_samples(data):
    x, y = data
    model = _model()
    first, second = quantlens.evaluate(model, TensorDataset(x[:60], y[:60])), quantlens.evaluate(
        model, TensorDataset(x[30:], y[30:]))
    with pytest.raises(DataError, match=r"different samples \(60 and 66 samples, 30 inputs in common\)"):
        quantlens.compare(first, second)
    relabelled = quantlens.evaluate(model, TensorDataset(x, (y + 1) % CLASSES))
    with pytest.raises(DataError, match="96 inputs in common, with other labels"):
        quantlens.compare(quantlens.evaluate(model, TensorDataset(x, y)), relabelled)
    with pytest.raises(ConfigError, match="compare: b is dict; expected an EvaluationResult"):
        quantlens.compare(first, {"top1": 0.5})  # type: ignore[arg-type]


# ---- benchmark ----------------------------------------------------------------------------------

QUICK = {"threads": 1, "rounds": 2, "samples_per_round": 2, "warmup_until_steady": False, "agreement_samples": 16}


def test_benchmark_times_backends_and_reports_latency(data, tmp_path):
    x, y = data
    result = quantlens.benchmark(_model(), ("torch-fp32", "ort-fp32"), example=TensorDataset(x, y),
                                 batch_sizes=(1, 4), out_dir=tmp_path / "bench", **QUICK)
    assert result.ready == ("torch-fp32", "ort-fp32") and result.batch_sizes == (1, 4)
    latency = result.latency("ort-fp32")  # batch 1
    assert latency.count == 4 and latency.median > 0 and latency.median_ci[0] <= latency.median <= latency.median_ci[1]
    assert result.throughput("torch-fp32", 4) == pytest.approx(4 / result.latency("torch-fp32", 4).median)
    assert result.speedup("ort-fp32", 4).baseline == "torch-fp32"
    assert result.report.backend("ort-fp32").agreement.samples == 16
    assert "ort-fp32" in result.table()
    assert BenchmarkReport.load(tmp_path / "bench") == result.report
    with pytest.raises(QuantlensError, match="'ort-int8' was not timed at batch size 1"):
        result.latency("ort-int8")


def test_benchmark_refuses_bad_requests_in_one_line(data):
    x, _ = data
    with pytest.raises(ConfigError, match="benchmark: backends: unknown backend 'ort-int9'"):
        quantlens.benchmark(_model(), ["ort-int9"], example=x)
    with pytest.raises(ConfigError, match="benchmark: rounds"):
        quantlens.benchmark(_model(), ["torch-fp32"], example=x, rounds=0)
    with pytest.raises(ConfigError, match="benchmark: unknown key 'round'"):
        quantlens.benchmark(_model(), ["torch-fp32"], example=x, round=3)
    with pytest.raises(DataError, match=r"example images have shape \(16, 192\)"):
        quantlens.benchmark(_model(), ["torch-fp32"], example=x.reshape(N, -1), **QUICK)


# ---- import -------------------------------------------------------------------------------------


def test_import_quantlens_stays_cheap_and_the_api_loads_no_runtime():
    code = ("import sys, quantlens\n"
            "heavy = ('torch', 'onnxruntime', 'openvino', 'sklearn')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "quantlens.quantize, quantlens.benchmark, quantlens.EvaluationResult\n"
            "print(sorted(m for m in ('onnxruntime', 'openvino') if m in sys.modules))\n")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[:2] == ["[]", "[]"]
    assert "quantize" in dir(quantlens)
    with pytest.raises(AttributeError, match="no attribute 'quantise'"):
        quantlens.quantise  # noqa: B018
