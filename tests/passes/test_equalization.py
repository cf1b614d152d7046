"""Cross-layer equalisation: the function is kept, per-channel weight ranges become more uniform."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens.errors import ModelError
from quantlens.models.build import build_model
from quantlens.passes import ChannelClamp, equalize, fold_batchnorm
from quantlens.passes.equalization import channel_ranges, input_channel_ranges, weight_range_uniformity

from ._models import randomise_bn, relative_error


def folded(name: str) -> nn.Module:
    return fold_batchnorm(randomise_bn(build_model(name, num_classes=10, in_channels=3, image_size=32))).model


@pytest.mark.parametrize("name, min_pairs", [("resnet20_cifar", 9), ("mobilenet_v2", 30)])
def test_function_is_kept_and_ranges_become_more_uniform(name, min_pairs):
    model = folded(name)
    result = equalize(model)
    assert len(result.pairs) >= min_pairs
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(model(x), result.model(x)) < 1e-5
    assert result.uniformity_before == pytest.approx(weight_range_uniformity(model))
    assert result.uniformity_after > result.uniformity_before + 0.05
    # after the last sweep each pair's shared channels have (nearly) equal ranges
    first, second = (result.model.get_submodule(n) for n in result.pairs[0])
    torch.testing.assert_close(channel_ranges(first), input_channel_ranges(second), rtol=1e-2, atol=1e-6)


def test_mobilenet_relu6_becomes_a_channel_clamp_or_is_skipped():
    model = folded("mobilenet_v2")
    clipped = equalize(model, relu6="clip")
    assert clipped.clamps and all(isinstance(clipped.model.get_submodule(n), ChannelClamp) for n in clipped.clamps)
    skipped = equalize(model, relu6="skip")
    assert not skipped.clamps and len(skipped.pairs) < len(clipped.pairs)
    assert any("ReLU6" in why for why in skipped.not_paired.values())
    assert not any(isinstance(m, ChannelClamp) for m in model.modules())  # input untouched


def test_depthwise_chain_is_equalised_through_the_depthwise_conv():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                        nn.Conv2d(8, 4, 1)).eval()
    with torch.no_grad():  # channels of very different ranges
        net[0].weight.mul_(torch.logspace(-2, 1, 8).reshape(8, 1, 1, 1))
        net[2].weight.mul_(torch.logspace(1, -1, 8).reshape(8, 1, 1, 1))
    result = equalize(net, iterations=100, tolerance=1e-6)
    assert result.pairs == [("0", "2"), ("2", "4")]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert relative_error(net(x), result.model(x)) < 1e-5
    eq = result.model
    torch.testing.assert_close(channel_ranges(eq[0]), input_channel_ranges(eq[2]), rtol=1e-3, atol=0)
    torch.testing.assert_close(channel_ranges(eq[2]), input_channel_ranges(eq[4]), rtol=1e-3, atol=0)
    assert weight_range_uniformity(eq) > 1.5 * weight_range_uniformity(net)


def test_bn_between_a_pair_is_refused():
    model = randomise_bn(build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32))
    with pytest.raises(ModelError, match="fold_bn"):
        equalize(model)
