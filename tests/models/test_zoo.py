"""The model zoo: every registered model builds for any channels/classes, trains, keeps one module
per call site; the CIFAR ResNet-20 loads the real pretrained checkpoint and classifies real images."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import quantlens.models.zoo  # noqa: F401  (registers the zoo)
from quantlens.errors import ModelError
from quantlens.models.registry import MODELS
from quantlens.models.zoo.efficientnet import DropPath
from quantlens.models.zoo.resnet_cifar import SubsampleZeroPadShortcut
from quantlens.nn.ops import Add, MatMul, Mul

EXPECTED_MODELS = {
    "compact_cnn", "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar",
    "resnet18", "resnet50", "mobilenet_v2", "vgg11_bn", "vgg16_bn", "efficientnet_b0", "vit_tiny",
}
ALL_MODELS = MODELS.names()
SINGLE_CALL_SITE_TYPES = (Add, Mul, MatMul, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Softmax)
RESNET20_CHECKPOINT = "models/resnet20-cifar10/resnet20-12fca82f.th"
CIFAR_JPEGS = "data/cifar10-test-jpeg"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build(name: str, in_channels: int = 3, num_classes: int = 10, image_size: int | None = None, **options):
    card = MODELS.get(name)
    return card.build(num_classes=num_classes, in_channels=in_channels,
                      image_size=image_size or card.min_input_size, **options)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_expected_model_is_registered():
    assert EXPECTED_MODELS <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("in_channels, num_classes", list(itertools.product((1, 3), (2, 10))))
def test_builds_for_any_channels_and_classes_and_backpropagates(name, in_channels, num_classes):
    size = MODELS.get(name).min_input_size
    model = build(name, in_channels, num_classes, size).train()
    x = torch.randn(2, in_channels, size, size)
    logits = model(x)
    assert logits.shape == (2, num_classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, num_classes - 1])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {param_name} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {param_name} has a non-finite gradient"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_add_matmul_and_activation_instance_has_exactly_one_call_site(name):
    model = build(name).eval()
    paths_by_module: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths_by_module.setdefault(id(module), []).append(path)
    shared = [paths for paths in paths_by_module.values() if len(paths) > 1]
    assert not shared, f"{name}: module objects registered at several places: {shared}"

    calls: Counter[str] = Counter()
    tracked = {path: module for path, module in model.named_modules() if isinstance(module, SINGLE_CALL_SITE_TYPES)}
    for path, module in tracked.items():
        module.register_forward_hook(lambda _m, _i, _o, path=path: calls.update([path]))
    size = MODELS.get(name).min_input_size
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    wrong = {path: calls[path] for path in tracked if calls[path] != 1}
    assert tracked and not wrong, f"{name}: modules not called exactly once: {wrong}"


def test_compact_cnn_has_about_half_a_million_parameters_and_takes_8_to_224_pixels():
    model = build("compact_cnn", image_size=32).eval()
    assert 500_000 <= parameter_count(model) <= 540_000
    with torch.no_grad():
        for size in (8, 28, 32, 224):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 10)
    assert 500_000 <= parameter_count(build("compact_cnn", in_channels=1, image_size=8)) <= 540_000


@pytest.mark.parametrize("name, expected", [
    ("resnet20_cifar", 269_722), ("resnet32_cifar", 464_154),
    ("resnet44_cifar", 658_586), ("resnet56_cifar", 853_018),
])
def test_cifar_resnet_parameter_counts_match_he_et_al(name, expected):
    # He et al. (2016), table 6: 0.27M, 0.46M, 0.66M, 0.85M
    assert parameter_count(build(name, image_size=32)) == expected


def test_option_a_shortcut_subsamples_and_pads_channels_equally_without_state():
    shortcut = SubsampleZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 5, 5)
    out = shortcut(x)
    assert out.shape == (2, 32, 3, 3)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()
    assert not list(shortcut.parameters()) and not list(shortcut.buffers())


def _resnet20_pretrained(shared_path) -> nn.Module:
    checkpoint = torch.load(shared_path(RESNET20_CHECKPOINT), weights_only=True, map_location="cpu")
    state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    model = build("resnet20_cifar", image_size=32)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


def _first_cifar_jpegs(shared_path, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    root = shared_path(CIFAR_JPEGS)
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for file in sorted(folder.glob("*.jpg"))[:per_class]:
            images.append(np.asarray(Image.open(file).convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (N, 3, 32, 32) in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.tensor(labels)


@pytest.mark.shared_data
def test_resnet20_cifar_loads_the_pretrained_checkpoint_strictly(shared_path):
    model = _resnet20_pretrained(shared_path)
    assert parameter_count(model) == 269_722


@pytest.mark.shared_data
def test_pretrained_resnet20_classifies_real_cifar_images(shared_path):
    model = _resnet20_pretrained(shared_path)
    x, labels = _first_cifar_jpegs(shared_path, per_class=20)
    assert x.shape == (200, 3, 32, 32)
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.7, f"ResNet-20 accuracy {accuracy:.3f} on 200 CIFAR-10 JPEGs (about 0.8 expected)"


@pytest.mark.parametrize("name, expected_shapes", [
    ("resnet18", {"conv1.weight": (64, 3, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                  "layer4.1.bn2.running_var": (512,), "fc.weight": (10, 512)}),
    ("resnet50", {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.1.weight": (256,),
                  "layer3.5.conv2.weight": (256, 256, 3, 3), "fc.weight": (10, 2048)}),
    ("mobilenet_v2", {"features.0.0.weight": (32, 3, 3, 3), "features.1.conv.0.0.weight": (32, 1, 3, 3),
                      "features.1.conv.1.weight": (16, 32, 1, 1), "features.2.conv.0.0.weight": (96, 16, 1, 1),
                      "features.17.conv.3.weight": (320,), "features.18.1.weight": (1280,),
                      "classifier.1.weight": (10, 1280)}),
    ("efficientnet_b0", {"features.0.0.weight": (32, 3, 3, 3), "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
                         "features.2.0.block.2.fc2.weight": (96, 4, 1, 1),
                         "features.2.0.block.3.1.running_mean": (24,), "features.6.3.block.1.0.weight": (1152, 1, 5, 5),
                         "features.8.0.weight": (1280, 320, 1, 1), "classifier.1.weight": (10, 1280)}),
    ("vgg16_bn", {"features.0.weight": (64, 3, 3, 3), "features.1.running_mean": (64,),
                  "features.40.weight": (512, 512, 3, 3), "classifier.0.weight": (4096, 25088),
                  "classifier.6.weight": (10, 4096)}),
    ("vit_tiny", {"patch_embed.proj.weight": (192, 3, 16, 16), "pos_embed": (1, 197, 192),
                  "blocks.11.attn.qkv.weight": (576, 192), "blocks.0.mlp.fc1.weight": (768, 192),
                  "head.weight": (10, 192)}),
])
def test_state_dict_layout_follows_the_published_architectures(name, expected_shapes):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost at 224x224
        state = build(name, image_size=224).state_dict()
    for key, shape in expected_shapes.items():
        assert key in state, f"{name}: missing {key}"
        assert tuple(state[key].shape) == shape, f"{name}: {key} is {tuple(state[key].shape)}, expected {shape}"


def test_vgg_head_is_compact_for_small_images_and_torchvision_style_from_64_pixels():
    compact_head = build("vgg11_bn", image_size=32).classifier[-1]
    assert isinstance(compact_head, nn.Linear) and compact_head.in_features == 512
    with torch.device("meta"):
        full = build("vgg11_bn", image_size=64)
        forced_compact = build("vgg11_bn", image_size=224, classifier="compact")
        assert full.classifier[0].in_features == 512 * 7 * 7
        assert full(torch.empty(2, 3, 64, 64)).shape == (2, 10)
        assert forced_compact.classifier[-1].in_features == 512
    with pytest.raises(ModelError, match="classifier must be one of"):
        build("vgg11_bn", image_size=32, classifier="huge")


def test_mobilenet_v2_width_multiplier_scales_channels():
    narrow = build("mobilenet_v2", image_size=32, width_mult=0.5)
    assert narrow.features[0][0].out_channels == 16
    assert parameter_count(narrow) < parameter_count(build("mobilenet_v2", image_size=32))


def test_drop_path_drops_whole_samples_in_training_only():
    drop = DropPath(0.5)
    x = torch.ones(2000, 3, 2, 2)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(dim=1)
    assert torch.equal(per_sample[~dropped], torch.full_like(per_sample[~dropped], 2.0))
    assert 0.4 < dropped.float().mean().item() < 0.6
    assert torch.equal(drop.eval()(x), x)


def test_efficientnet_is_deterministic_in_eval_mode():
    model = build("efficientnet_b0").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("image_size, patches", [(28, 49), (32, 64)])
def test_vit_tiny_takes_28_and_32_pixel_images_with_patch_4(image_size, patches):
    model = build("vit_tiny", in_channels=1, image_size=image_size, depth=2).eval()
    assert model.patch_embed.proj.kernel_size == (4, 4)
    assert model.pos_embed.shape == (1, patches + 1, 192)
    with torch.no_grad():
        assert model(torch.randn(2, 1, image_size, image_size)).shape == (2, 10)


def test_vit_tiny_attention_runs_through_modules_in_every_block():
    model = build("vit_tiny", image_size=32, depth=3, embed_dim=48, num_heads=4)
    modules = list(model.modules())
    assert sum(isinstance(m, MatMul) for m in modules) == 2 * 3
    assert sum(isinstance(m, nn.Softmax) for m in modules) == 3
    assert sum(isinstance(m, Add) for m in modules) == 2 * 3 + 1  # two residuals a block + position


def test_vit_tiny_refuses_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ModelError, match="image_size 30 is not divisible by patch_size 4"):
        build("vit_tiny", image_size=30)
    with pytest.raises(ModelError, match="image_size 72 is not divisible by patch_size 16"):
        build("vit_tiny", image_size=72)  # the default patch from 64 pixels on is 16
    with pytest.raises(ModelError, match="image_size 32 is not divisible by patch_size 5"):
        build("vit_tiny", image_size=32, patch_size=5)
    with pytest.raises(ModelError, match="embed_dim 100 is not divisible by num_heads 3"):
        build("vit_tiny", image_size=32, embed_dim=100)


def test_vit_tiny_names_the_size_it_was_built_for_when_given_another():
    model = build("vit_tiny", image_size=32, depth=1)
    with pytest.raises(ModelError, match="built for 32x32"):
        model(torch.randn(1, 3, 28, 28))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_impossible_arguments_raise_model_errors_that_name_them(name):
    with pytest.raises(ModelError, match="num_classes"):
        build(name, num_classes=0)
    with pytest.raises(ModelError, match="below this model's minimum"):
        build(name, image_size=MODELS.get(name).min_input_size - 1)
