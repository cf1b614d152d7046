"""Progress and notes as events: emitted by the library's long loops, rendered only by the CLI."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from quantlens import events
from quantlens.data import PreparedData, Preprocessing, load_source
from quantlens.data.source import GRAY_DEFAULT
from quantlens.devices import module_device, resolve_device
from quantlens.errors import ConfigError
from quantlens.events import Note, TaskAdvanced, TaskFinished, TaskStarted
from quantlens.models.build import build_model
from quantlens.nn import calibrate, quantize_model
from quantlens.progress_view import ProgressView
from quantlens.recipes import QuantizationConfig, plan_layers
from quantlens.train import predict


@pytest.fixture
def collected():
    seen: list = []
    with events.listening(seen.append):
        yield seen


def _tasks(seen, description):
    started = [e for e in seen if isinstance(e, TaskStarted) and e.description.startswith(description)]
    assert started, [e for e in seen if isinstance(e, TaskStarted)]
    ids = {e.task for e in started}
    advanced = sum(e.advance for e in seen if isinstance(e, TaskAdvanced) and e.task in ids)
    finished = {e.task for e in seen if isinstance(e, TaskFinished)}
    return started, advanced, ids <= finished


def test_without_a_listener_events_go_nowhere():
    with events.task("nothing", total=3) as t:
        t.advance(3)
    events.note("unheard")


def test_listening_is_scoped_and_nests():
    outer, inner = [], []
    with events.listening(outer.append):
        events.note("a")
        with events.listening(inner.append):
            events.note("b")
        events.note("c")
    events.note("d")
    assert [e.text for e in outer] == ["a", "c"] and [e.text for e in inner] == ["b"]


@pytest.fixture(scope="module")
def digits_data():
    source = load_source("digits")
    return PreparedData.from_source(source, Preprocessing(1, (8, 8), GRAY_DEFAULT))


def test_evaluation_reports_every_image(collected, digits_data):
    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8)
    predict(model, digits_data, np.arange(300), batch_size=64)
    started, advanced, finished = _tasks(collected, "evaluating")
    assert started[0].total == 300 and advanced == 300 and finished


def test_calibration_reports_progress(collected, digits_data):
    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8).eval()
    qmodel = quantize_model(model, plan_layers(model, QuantizationConfig(format="int8")).layers)
    batches = (x for x, _, _ in digits_data.batches(np.arange(96), 32))
    assert calibrate(qmodel, batches, total=96) == 96
    started, advanced, finished = _tasks(collected, "calibrating")
    assert started[0].total == 96 and advanced == 96 and finished


def test_decoding_and_preparing_images_report_progress(collected, tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6 + i, 7, 3), 30 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    source = load_source(f"imagefolder:{tmp_path}")
    PreparedData.from_source(source, Preprocessing(3, (8, 8), source.normalization))
    assert _tasks(collected, "decoding images")[1] == 10
    assert _tasks(collected, "preparing images at 3x8x8")[1] == 10


def test_training_reports_steps_and_epochs(collected, digits_data):
    from quantlens.recipes import TrainConfig
    from quantlens.train import train_model

    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8, options={"widths": [4, 8, 8]})
    cfg = TrainConfig(enabled=True, epochs=2, batch_size=256)
    train_model(model, digits_data, np.arange(1000), np.arange(1000, 1200), cfg, seed=0)
    started, advanced, finished = _tasks(collected, "train")
    assert started[0].total == 8 and advanced == 8 and finished
    assert sum(isinstance(e, Note) and "epoch" in e.text for e in collected) == 2


def test_progress_view_prints_notes_and_warnings_as_plain_lines():
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=False)
    with ProgressView(console) as view, events.listening(view):
        with events.task("working", total=2) as t:
            t.advance(2)
        events.note("a [bracketed] path/x")
        events.warn("careful")
    text = buffer.getvalue()
    assert "a [bracketed] path/x" in text and "warning: careful" in text


def test_progress_view_renders_a_task_of_unknown_length():
    # a pass or a search has no count up front: its bar shows what is done, and the view closes cleanly
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=True)
    with ProgressView(console) as view, events.listening(view):
        with events.task("pass fold_bn") as t:
            t.advance(3)
            view._progress.refresh()
    assert "3 items" in buffer.getvalue()


def test_cli_shows_python_warnings_as_one_line(cli, monkeypatch, tmp_path):
    import warnings

    import quantlens.experiments.runner as runner

    real = runner.prepare_run_root

    def warns(*args, **kwargs):
        warnings.warn("something odd", UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "prepare_run_root", warns)
    result = cli("eval", "--model", "compact_cnn", "--data", "digits", "--out", tmp_path)
    assert result.code == 0
    lines = [line for line in result.err.splitlines() if "something odd" in line]
    assert lines == ["warning: something odd"], result.err
    assert "warnings.warn" not in result.err


def test_device_settings():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: cuda asked for, but torch sees no CUDA GPU"):
            resolve_device("cuda")
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "CPU", ""])
def test_device_field_refuses_unknown_devices(bad):
    from quantlens.experiments.spec import spec_from_dict

    with pytest.raises(ConfigError, match="config: device: "):
        spec_from_dict({"device": bad})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_static_range_simulation_runs_on_cuda(digits_data):
    model = build_model("compact_cnn", num_classes=10, in_channels=1, image_size=8).eval().cuda()
    for fmt in ("int8", "fp8_e4m3", "nvfp4"):
        qmodel = quantize_model(model, plan_layers(model, QuantizationConfig(format=fmt)).layers)
        calibrate(qmodel, (x for x, _, _ in digits_data.batches(np.arange(64), 32)))
        assert predict(qmodel, digits_data, np.arange(128)).probs.shape == (128, 10)


def test_random_weights_are_said_loudly(tmp_path):
    from quantlens.experiments.runner import run_experiment
    from quantlens.experiments.spec import spec_from_dict

    seen: list = []
    spec = spec_from_dict({"model": {"name": "compact_cnn", "options": {"widths": [4, 8, 8]}},
                           "output": {"root": str(tmp_path)}})
    with events.listening(seen.append):
        outcome = run_experiment(spec)
    warnings = [e.text for e in seen if isinstance(e, Note) and e.level == "warning"]
    assert any("RANDOM weights" in text for text in warnings)
    assert outcome.evaluation.model["weights"] == "random (untrained)"


def test_interleaved_timing_reports_warm_up_and_rounds(collected):
    from quantlens.bench.compare import InterleavePlan, run_interleaved
    from quantlens.bench.timing import WarmupPolicy

    steps = []
    plan = InterleavePlan(rounds=3, samples_per_round=1, warmup=WarmupPolicy(iterations=1, until_steady=False))
    run_interleaved({"a": lambda: None, "b": lambda: None}, plan, on_round=lambda i: steps.append(("round", i)),
                    on_warmup=lambda name: steps.append(("warm", name)))
    assert steps == [("warm", "a"), ("warm", "b"), ("round", 0), ("round", 1), ("round", 2)]


def test_progress_bars_fit_a_100_column_terminal_whole():
    import re

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=True, color_system=None)
    with ProgressView(console) as view, events.listening(view):
        with events.task("simulated formats", total=2, unit="formats"), \
                events.task("evaluating w:mxfp4/block32 in:mxfp4/block32", total=9488, unit="images") as b, \
                events.task("train", total=100, unit="steps") as t:
            b.advance(4000)
            t.advance(50, status="epoch 3 loss 0.12345678")
            view._progress.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue()).replace("\r", "\n")
    lines = [line for line in text.splitlines() if "eta" in line]
    assert lines and all(len(line) <= 100 for line in lines)
    assert any("4000/9488 images" in line for line in lines) and any("50/100 steps" in line for line in lines)
    assert not any("0:…" in line for line in lines)  # the time columns stay whole
