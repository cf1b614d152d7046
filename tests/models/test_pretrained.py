"""Pretrained `timm:` / `torchvision:` models (model.pretrained): their cached weights and their own preprocessing.

Neither package imports here (torchvision has no CPU build on this index; timm imports torchvision), so
most tests run against stand-in packages `timm`, `torchvision` and `huggingface_hub` (in `standins/`,
put first on sys.path). They implement only the API quantlens calls, with the
signatures and behaviour of timm 1.0.31, torchvision 0.29.1 and huggingface_hub 2.4.0, around real
small modules; their loaders refuse to download, so a test fails if quantlens lets a package fetch or
unpickle weights itself. Checkpoints are real state dicts saved into the caches' real layouts (torch
hub: $TORCH_HOME/hub/checkpoints/<file>; Hugging Face: $HF_HUB_CACHE/models--org--name/refs/main +
snapshots/<sha>/<file>). The last tests use the real packages when they import.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from quantlens import events
from quantlens.data.registry import load_source
from quantlens.data.transforms import ResizeRule
from quantlens.errors import CheckpointError, ConfigError, ModelError, describe
from quantlens.experiments.setup import prepare_model
from quantlens.experiments.spec import spec_from_dict
from quantlens.models.pretrained import resolve_pretrained
from quantlens.models.sidecar import CheckpointSidecar

PACKAGES = ("timm", "torchvision", "huggingface_hub")

STANDINS = Path(__file__).resolve().parent / "standins"  # timm, torchvision, huggingface_hub


def _forget_packages() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in (*PACKAGES, "_tinynet"):
            del sys.modules[name]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, and the stand-in packages first on sys.path."""
    torch_home, hf_cache = tmp_path / "torch_home", tmp_path / "hf_hub"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    _forget_packages()
    monkeypatch.syspath_prepend(str(STANDINS))
    yield {"torch_hub": torch_home / "hub" / "checkpoints", "hf": hf_cache}
    _forget_packages()


def _weights(num_classes: int, head: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of the stand-ins' TinyNet with every tensor (BN statistics included) non-trivial."""
    g = torch.Generator().manual_seed(seed)
    return {"conv_stem.weight": torch.randn(8, 3, 3, 3, generator=g), "bn1.weight": torch.rand(8, generator=g) + 0.5,
            "bn1.bias": torch.randn(8, generator=g), "bn1.running_mean": torch.randn(8, generator=g),
            "bn1.running_var": torch.rand(8, generator=g) + 0.5, "bn1.num_batches_tracked": torch.tensor(7),
            f"{head}.weight": torch.randn(num_classes, 8, generator=g), f"{head}.bias": torch.randn(num_classes,
                                                                                                   generator=g)}


def _hf_cache(root: Path, repo_id: str, files: dict[str, dict], sha: str = "0123456789abcdef") -> Path:
    """Files in the Hugging Face cache layout: refs/main holds the commit, snapshots/<commit>/<file>."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name, state in files.items():
        if name.endswith(".safetensors"):
            save_file(state, str(snapshot / name))
        else:
            torch.save(state, snapshot / name)
    return snapshot


def _torch_hub(folder: Path, name: str, state: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    return folder / name


def _assert_loaded(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


# ---- timm ---------------------------------------------------------------------------------------------

def test_timm_weights_come_from_the_hugging_face_cache_safetensors_first(caches):
    safe, pickled = _weights(10, "head", 1), _weights(10, "head", 2)
    snapshot = _hf_cache(caches["hf"], "timm/tinynet.hf_in10",
                         {"model.safetensors": safe, "pytorch_model.bin": pickled})
    weights = resolve_pretrained("timm", "tinynet")  # the architecture's default tag
    assert weights.path == snapshot / "model.safetensors" and weights.label == "timm tinynet.hf_in10"
    model, replaced = weights.build(num_classes=10, in_channels=3, options={})
    _assert_loaded(model, safe)
    assert replaced == [] and "state_dict" not in model.pretrained_cfg  # not kept twice


def test_timm_pickle_is_read_with_weights_only(caches):
    state = _weights(10, "head", 3)
    snapshot = _hf_cache(caches["hf"], "timm/tinynet.hf_in10", {"pytorch_model.bin": state})
    weights = resolve_pretrained("timm", "tinynet.hf_in10")
    assert weights.path == snapshot / "pytorch_model.bin"
    _assert_loaded(weights.build(num_classes=10, in_channels=3, options={})[0], state)
    torch.save({"state_dict": state, "hook": Path("x")}, weights.path)  # a pickled object besides the tensors
    with pytest.raises(CheckpointError, match="weights_only=True"):
        weights.build(num_classes=10, in_channels=3, options={})


def test_timm_url_weights_come_from_torch_hub_checkpoints(caches):
    state = _weights(10, "head", 4)
    path = _torch_hub(caches["torch_hub"], "tinynet_url-0f1e2d3c.pth", state)
    weights = resolve_pretrained("timm", "tinynet.url_in10")
    assert weights.path == path
    _assert_loaded(weights.build(num_classes=10, in_channels=3, options={})[0], state)


def test_timm_grayscale_input_adapts_the_first_convolution_as_timm_does(caches):
    state = _weights(10, "head", 5)
    _hf_cache(caches["hf"], "timm/tinynet.hf_in10", {"model.safetensors": state})
    model, _ = resolve_pretrained("timm", "tinynet").build(num_classes=10, in_channels=1, options={})
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"].sum(1, keepdim=True))


def test_timm_missing_cache_is_one_line_naming_what_to_fetch_and_where(caches):
    with pytest.raises(ModelError) as info:
        resolve_pretrained("timm", "tinynet")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("timm:tinynet pretrained weights are not cached here")
    assert f"timm/tinynet.hf_in10 (model.safetensors or pytorch_model.bin) in {caches['hf']}" in message
    assert "timm.create_model('tinynet.hf_in10', pretrained=True)" in message
    assert f"copy the folder models--timm--tinynet.hf_in10 of its Hugging Face cache into {caches['hf']}" in message
    with pytest.raises(ModelError, match=f"looked for {caches['torch_hub'] / 'tinynet_url-0f1e2d3c.pth'}.*"
                                         f"download https://example.invalid/tinynet/tinynet_url-0f1e2d3c.pth"):
        resolve_pretrained("timm", "tinynet.url_in10")


@pytest.mark.parametrize("name, message", [
    ("nonet", "timm has no model 'nonet'"),
    ("tinynet.nosuchtag", r"Invalid pretrained tag \(nosuchtag\) for tinynet"),
    ("tinynet_nocfg", "timm has no pretrained weights for 'tinynet_nocfg'"),
    ("hf-hub:timm/tinynet.hf_in10", "not hf-hub: sources"),
])
def test_timm_names_without_weights(caches, name, message):
    with pytest.raises(ModelError, match=message):
        resolve_pretrained("timm", name)


def test_timm_preprocessing_is_resolve_data_config(caches):
    _hf_cache(caches["hf"], "timm/tinynet.hf_in10", {"model.safetensors": _weights(10, "head", 6)})
    own = resolve_pretrained("timm", "tinynet").preprocessing
    # input_size (3, 16, 16), crop_pct 0.875, crop_mode center, bicubic: shorter side to floor(16 / 0.875) = 18
    assert (own.size, own.resize, own.scale, own.interpolation) == ((16, 16), "shorter_side", (18, 18), "bicubic")
    assert own.mean == (0.5, 0.4, 0.3) and own.std == (0.2, 0.25, 0.3)
    assert own.origin == "timm.data.resolve_data_config(tinynet.hf_in10)"
    assert own.scale_at((32, 32)) == (36, 36)  # timm's img_size override: floor(32 / 0.875)
    _torch_hub(caches["torch_hub"], "tinynet_url-0f1e2d3c.pth", _weights(10, "head", 6))
    squash = resolve_pretrained("timm", "tinynet.url_in10").preprocessing
    assert (squash.size, squash.resize, squash.scale, squash.interpolation) == ((20, 20), "squash", (25, 25),
                                                                                "bilinear")
    _hf_cache(caches["hf"], "timm/tinynet.border_in10", {"model.safetensors": _weights(10, "head", 6)})
    with pytest.raises(ModelError, match="crop_mode 'border' is not implemented"):
        resolve_pretrained("timm", "tinynet.border_in10")


# ---- torchvision --------------------------------------------------------------------------------------

def test_torchvision_weights_come_from_torch_hub_checkpoints(caches):
    v1, v2 = _weights(10, "fc", 7), _weights(10, "fc", 8)
    path_v1 = _torch_hub(caches["torch_hub"], "tinynet-1a2b3c4d.pth", v1)
    path_v2 = _torch_hub(caches["torch_hub"], "tinynet-5e6f7a8b.pth", v2)
    default = resolve_pretrained("torchvision", "tinynet")  # DEFAULT is IMAGENET1K_V2
    assert default.path == path_v2 and default.label == "torchvision TinyNet_Weights.IMAGENET1K_V2"
    _assert_loaded(default.build(num_classes=10, in_channels=3, options={})[0], v2)
    for entry in ("IMAGENET1K_V1", "TinyNet_Weights.IMAGENET1K_V1"):
        explicit = resolve_pretrained("torchvision", f"tinynet@{entry}")
        assert explicit.path == path_v1
        _assert_loaded(explicit.build(num_classes=10, in_channels=3, options={})[0], v1)


def test_torchvision_preprocessing_is_the_weights_transforms(caches):
    _torch_hub(caches["torch_hub"], "tinynet-1a2b3c4d.pth", _weights(10, "fc", 9))
    _torch_hub(caches["torch_hub"], "tinynet-5e6f7a8b.pth", _weights(10, "fc", 9))
    v1 = resolve_pretrained("torchvision", "tinynet@IMAGENET1K_V1").preprocessing
    assert (v1.size, v1.resize, v1.scale, v1.interpolation, v1.antialias) == ((16, 16), "shorter_side", (18, 18),
                                                                              "bilinear", True)
    assert v1.mean == (0.485, 0.456, 0.406) and v1.origin == "torchvision TinyNet_Weights.IMAGENET1K_V1 transforms"
    v2 = resolve_pretrained("torchvision", "tinynet").preprocessing
    assert (v2.scale, v2.interpolation, v2.mean, v2.std) == ((20, 20), "bicubic", (0.5,) * 3, (0.25,) * 3)


def test_torchvision_missing_cache_and_unknown_names(caches):
    with pytest.raises(ModelError) as info:
        resolve_pretrained("torchvision", "tinynet@IMAGENET1K_V1")
    message = str(info.value)
    assert "\n" not in message and message.startswith("torchvision:tinynet@IMAGENET1K_V1 pretrained weights are "
                                                      "not cached here")
    assert f"looked for {caches['torch_hub'] / 'tinynet-1a2b3c4d.pth'}" in message
    assert "https://download.example.invalid/models/tinynet-1a2b3c4d.pth" in message
    with pytest.raises(ModelError, match="has no entry 'V9'.*IMAGENET1K_V1, IMAGENET1K_V2, IN1K"):
        resolve_pretrained("torchvision", "tinynet@V9")
    with pytest.raises(ModelError, match="no pretrained weights for 'nonet'.*Unknown model"):
        resolve_pretrained("torchvision", "nonet")
    with pytest.raises(ModelError, match="no pretrained weights for 'plainnet'"):
        resolve_pretrained("torchvision", "plainnet")


def test_torchvision_new_head_keeps_every_other_tensor(caches):
    state = _weights(1000, "fc", 10)
    _torch_hub(caches["torch_hub"], "tinynet_in1k-9c8d7e6f.pth", state)
    weights = resolve_pretrained("torchvision", "tinynet@IN1K")
    assert weights.num_classes == 1000
    model, replaced = weights.build(num_classes=10, in_channels=3, options={})
    assert replaced == ["fc.bias", "fc.weight"] and model.fc.out_features == 10
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items())


def test_torchvision_builder_arguments_set_with_weights_are_set_too(caches):
    _torch_hub(caches["torch_hub"], "googlenet-0a1b2c3d.pth", _weights(10, "fc", 15))
    weights = resolve_pretrained("torchvision", "googlenet")
    assert weights.build(num_classes=10, in_channels=3, options={})[0].transform_input is True
    assert weights.build(num_classes=10, in_channels=3, options={"transform_input": False})[0].transform_input is False


def test_weights_tag_without_pretrained_and_the_install_line(monkeypatch):
    from quantlens.models.build import build_model

    with pytest.raises(ModelError, match="'@IMAGENET1K_V1' names pretrained weights, which load only with "
                                         "model.pretrained"):
        build_model("torchvision:resnet18@IMAGENET1K_V1", num_classes=10, in_channels=3, image_size=32)
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ModelError, match=r"need the timm package.*install it with pip install 'quantlens\[timm\]'"):
        resolve_pretrained("timm", "resnet18")


# ---- set-up: size, statistics, class count, config ---------------------------------------------------

def _spec(name: str, **model):
    return spec_from_dict({"data": {"source": "digits"}, "model": {"name": name, "pretrained": True, **model},
                           "device": "cpu"})


def test_setup_takes_the_models_own_preprocessing(caches):
    _torch_hub(caches["torch_hub"], "tinynet-5e6f7a8b.pth", _weights(10, "fc", 11))
    source = load_source("digits")
    setup = prepare_model(_spec("torchvision:tinynet"), source)
    p = setup.preprocessing
    assert (p.channels, p.size) == (3, (16, 16))  # the weights' RGB at their crop size, not the data's 1x8x8
    assert (p.resize.mode, p.resize.scale, p.resize.interpolation) == ("shorter_side", (20, 20), "bicubic")
    assert p.normalization.mean == (0.5,) * 3
    assert setup.normalization_origin == "torchvision TinyNet_Weights.IMAGENET1K_V2 transforms"
    described = setup.describe()
    assert described["resize"] == "shorter side to 20 (bicubic, antialiased), centre crop 16x16"
    # config wins: data.image_size (the resize follows the crop fraction 16/20) and the statistics
    spec = spec_from_dict({"data": {"source": "digits", "image_size": 8, "mean": [0.1], "std": [0.2]},
                           "model": {"name": "torchvision:tinynet", "pretrained": True}, "device": "cpu"})
    setup = prepare_model(spec, source)
    assert setup.preprocessing.size == (8, 8) and setup.preprocessing.resize.scale == (10, 10)
    assert setup.preprocessing.normalization.mean == (0.1,) * 3 and setup.normalization_origin == "data.mean/std"


def test_class_count_mismatch_is_an_error_without_training(caches):
    _torch_hub(caches["torch_hub"], "tinynet_in1k-9c8d7e6f.pth", _weights(1000, "fc", 12))
    source = load_source("digits")
    with pytest.raises(ModelError) as info:
        prepare_model(_spec("torchvision:tinynet@IN1K"), source)
    assert str(info.value).startswith("model.pretrained: torchvision:tinynet@IN1K pretrained has 1000 classes but "
                                      "digits has 10")
    spec = spec_from_dict({"data": {"source": "digits"}, "train": {"enabled": True},
                           "model": {"name": "torchvision:tinynet@IN1K", "pretrained": True}, "device": "cpu"})
    seen = []
    with events.listening(seen.append):
        setup = prepare_model(spec, source)
    assert setup.model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    warnings = [e.text for e in seen if isinstance(e, events.Note) and e.level == "warning"]
    assert any("head (fc.bias, fc.weight) is new and random" in w for w in warnings)


@pytest.mark.parametrize("model, message", [
    ({"name": "compact_cnn"}, "model.pretrained: applies to timm:<name> and torchvision:<name> models; compact_cnn "
                              "is a zoo model"),
    ({"name": "python:quantlens.models.zoo.compact_cnn:compact_cnn"}, "is a python model"),
    ({"name": "timm:tinynet", "weights": "ckpt.safetensors"}, "model.pretrained: true and model.weights both"),
])
def test_pretrained_is_only_for_timm_and_torchvision(model, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_dict({"model": {**model, "pretrained": True}})


def test_weights_origin_is_the_cached_file(caches):
    from quantlens.experiments.setup import Setup

    path = _torch_hub(caches["torch_hub"], "tinynet-5e6f7a8b.pth", _weights(10, "fc", 13))
    assert Setup.weights_origin(_spec("torchvision:tinynet")) == \
        f"{path} (torchvision TinyNet_Weights.IMAGENET1K_V2 pretrained weights)"


# ---- end to end -----------------------------------------------------------------------------------------

def _config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump({"name": "pretrained", "device": "cpu", "data": {"source": "digits"},
                                    "model": {"name": name, "pretrained": True},
                                    "eval": {"split": "all", "max_samples": 200}}))
    return path


def test_eval_runs_the_cached_weights_on_the_models_own_preprocessing(caches, cli, run_root, tmp_path):
    state = _weights(10, "fc", 14)
    path = _torch_hub(caches["torch_hub"], "tinynet-1a2b3c4d.pth", state)
    result = cli("run", _config(tmp_path, "torchvision:tinynet@IMAGENET1K_V1"))
    assert result.code == 0, result.err
    run = next(run_root.iterdir())
    with np.load(run / "predictions.npz") as z:
        idx, probs = z["indices"], z["probs"]
    assert len(idx) == 200
    # The same samples computed directly: gray replicated to RGB, shorter side (8) to 18 bilinear, the centre
    # 16x16 (offset round(2 / 2) = 1), ImageNet statistics, the cached weights.
    source = load_source("digits")
    x = torch.from_numpy(np.asarray(source.images)[idx]).permute(0, 3, 1, 2).float().expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(18, 18), mode="bilinear", align_corners=False, antialias=True)[..., 1:17, 1:17]
    x = (x.round().clamp(0, 255) / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    reference = sys.modules["torchvision.tinynet"].TinyNet(num_classes=10, head_name="fc").eval()
    reference.load_state_dict(state)
    with torch.inference_mode():
        expected = torch.softmax(reference(x), 1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    metrics = yaml.safe_load((run / "metrics.json").read_text())["model"]
    assert metrics["weights"] == f"{path} (torchvision TinyNet_Weights.IMAGENET1K_V1 pretrained weights)"
    assert metrics["normalization_origin"] == "torchvision TinyNet_Weights.IMAGENET1K_V1 transforms"
    assert metrics["resize"] == "shorter side to 18 (bilinear, antialiased), centre crop 16x16"


def test_missing_cache_from_the_command_line_is_one_error_line(caches, cli, run_root, tmp_path):
    result = cli("run", _config(tmp_path, "timm:tinynet"))
    assert result.code == 2 and "Traceback" not in result.err
    assert len(result.error_lines) == 1
    assert "model.pretrained: timm:tinynet pretrained weights are not cached here" in result.error_lines[0]
    assert not run_root.exists() or not any(run_root.iterdir())  # refused before any run folder
    checked = cli("run", "--check", _config(tmp_path, "timm:tinynet"))  # the dry run finds it too
    assert checked.code == 2 and checked.error_lines == result.error_lines
    snapshot = _hf_cache(caches["hf"], "timm/tinynet.hf_in10", {"model.safetensors": _weights(10, "head", 16)})
    checked = cli("run", "--check", _config(tmp_path, "timm:tinynet"))
    assert checked.code == 0, checked.err
    line = f"weights: {snapshot / 'model.safetensors'} (timm tinynet.hf_in10 pretrained weights)"
    assert "".join(line.split()) in "".join(checked.out.split())  # the console wraps long lines


def test_a_fine_tuned_checkpoint_keeps_the_models_resize(caches, cli, run_root, tmp_path):
    """Fine-tuning from pretrained weights records the model's own resize in the checkpoint's sidecar, and
    evaluating that checkpoint later (no pretrained flag) resizes the same way."""
    _torch_hub(caches["torch_hub"], "tinynet_in1k-9c8d7e6f.pth", _weights(1000, "fc", 17))
    config = tmp_path / "fine-tune.yaml"
    config.write_text(yaml.safe_dump({"name": "fine-tune", "device": "cpu", "data": {"source": "digits"},
                                      "model": {"name": "torchvision:tinynet@IN1K", "pretrained": True},
                                      "train": {"enabled": True, "epochs": 1}}))
    result = cli("run", config)
    assert result.code == 0, result.err
    checkpoint = next(run_root.glob("*/**/*.safetensors"))
    sidecar = CheckpointSidecar.find(checkpoint)
    assert sidecar.resize_rule == ResizeRule("shorter_side", (18, 18), "bilinear", True)  # IN1K: resize 18, crop 16
    spec = spec_from_dict({"data": {"source": "digits"}, "device": "cpu",
                           "model": {"name": "torchvision:tinynet", "weights": str(checkpoint)}})
    setup = prepare_model(spec, load_source("digits"))
    assert setup.preprocessing.resize == sidecar.resize_rule and setup.preprocessing.size == (16, 16)
    assert setup.normalization_origin == "the checkpoint's sidecar"


def test_the_pretrained_flag_on_the_command_line(caches, cli, run_root):
    """--pretrained on eval (the data's 10 classes), and on bench without data: synthetic inputs take the
    weights' 1000 classes and their own input size."""
    _torch_hub(caches["torch_hub"], "tinynet-1a2b3c4d.pth", _weights(10, "fc", 18))
    result = cli("eval", "--model", "torchvision:tinynet@IMAGENET1K_V1", "--pretrained", "--data", "digits",
                 "--limit", "100", "--device", "cpu")
    assert result.code == 0, result.err
    _torch_hub(caches["torch_hub"], "tinynet_in1k-9c8d7e6f.pth", _weights(1000, "fc", 19))
    result = cli("bench", "--model", "torchvision:tinynet@IN1K", "--pretrained", "--backends", "torch-fp32",
                 "--batch-sizes", "2", "--threads", "1", "--rounds", "1", "--no-stages")
    assert result.code == 0, result.err
    said = " ".join(result.err.split())
    assert "synthetic data: 1000 classes, 3x16x16 (from torchvision TinyNet_Weights.IN1K pretrained weights)" in said


# ---- the real packages, when they import -------------------------------------------------------------------

def _real(package: str):
    """The real package, or a skip saying why (torchvision's CUDA build fails with RuntimeError on CPU torch)."""
    reason = f"the real {package} package is not installed here (the stand-in tests above cover its API)"
    try:
        return pytest.importorskip(package, reason=reason)
    except Exception as exc:  # noqa: BLE001  (a mismatched torch build: RuntimeError, not ImportError)
        pytest.skip(f"the real {package} package does not import here ({describe(exc)})")


def test_real_timm_cache_and_preprocessing(tmp_path, monkeypatch):
    timm = _real("timm")
    _real("huggingface_hub")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nor an old torch hub copy
    monkeypatch.setattr(importlib.import_module("huggingface_hub.constants"), "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match=f"timm/resnet18.a1_in1k .* in {tmp_path}"):
        resolve_pretrained("timm", "resnet18")
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    _hf_cache(tmp_path, "timm/resnet18.a1_in1k", {"model.safetensors": state})
    weights = resolve_pretrained("timm", "resnet18")
    expected = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg("resnet18").to_dict())
    own = weights.preprocessing
    assert own.size == tuple(expected["input_size"][1:]) and own.interpolation == expected["interpolation"]
    assert own.crop_fraction == expected["crop_pct"] and own.mean == tuple(expected["mean"])
    _assert_loaded(weights.build(num_classes=1000, in_channels=3, options={})[0], state)


def test_real_torchvision_cache_and_preprocessing(tmp_path, monkeypatch):
    torchvision = _real("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="resnet18-f37072fd.pth"):
        resolve_pretrained("torchvision", "resnet18@IMAGENET1K_V1")
    state = torchvision.models.resnet18().state_dict()
    _torch_hub(tmp_path / "hub" / "checkpoints", "resnet18-f37072fd.pth", state)
    weights = resolve_pretrained("torchvision", "resnet18@IMAGENET1K_V1")
    own = weights.preprocessing
    assert (own.size, own.scale, own.interpolation) == ((224, 224), (256, 256), "bilinear")
    _assert_loaded(weights.build(num_classes=1000, in_channels=3, options={})[0], state)
