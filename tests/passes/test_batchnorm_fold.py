"""BatchNorm folding: the folded model computes what the eval-mode original does, names stay put."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens.errors import ModelError
from quantlens.models.build import build_model
from quantlens.nn.ops import Add
from quantlens.passes import fold_batchnorm

from ._models import randomise_bn, relative_error


@pytest.mark.parametrize("name", ["resnet20_cifar", "resnet18", "mobilenet_v2"])
def test_zoo_models_fold_every_bn_and_keep_their_function_and_names(name):
    model = randomise_bn(build_model(name, num_classes=10, in_channels=3, image_size=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fold_batchnorm(model)
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert sorted(result.folded) == sorted(bns) and not result.not_folded and result.skipped is None
    folded = result.model
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]
    assert all(isinstance(folded.get_submodule(n), nn.Identity) for n in bns)
    assert type(folded) is type(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(model(x), folded(x)) < 1e-5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # input untouched


def test_train_mode_is_refused():
    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32).train()
    with pytest.raises(ModelError, match="train mode"):
        fold_batchnorm(model)


class Mixed(nn.Module):
    """Foldable and unfoldable BNs side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)  # has a bias: folded into it
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False)
        self.bn_up = nn.BatchNorm2d(6)
        self.branch = nn.Conv2d(6, 6, 1)
        self.bn_branch = nn.BatchNorm2d(6)  # its conv's output is also read by the add
        self.add = Add()
        self.bn_after_add = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5, bias=False)
        self.bn_fc = nn.BatchNorm1d(5)

    def forward(self, x):
        y = self.bn_up(self.up(self.bn(self.conv(x))))
        b = self.branch(y)
        y = self.bn_after_add(self.add(self.bn_branch(b), b))
        return self.bn_fc(self.fc(y.mean((2, 3))))


def test_grouped_transposed_conv_and_linear_fold_and_the_rest_is_reported():
    model = randomise_bn(Mixed())
    result = fold_batchnorm(model)
    assert result.folded == {"bn": "conv", "bn_up": "up", "bn_fc": "fc"}
    assert "other users" in result.not_folded["bn_branch"]
    assert "Add" in result.not_folded["bn_after_add"]
    assert result.model.fc.bias is not None  # created
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert relative_error(model(x), result.model(x)) < 1e-5


def test_untraceable_model_is_returned_unchanged_with_the_reason():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    result = fold_batchnorm(Branchy().eval())
    assert "not traceable" in result.skipped and "not traceable" in result.not_folded["bn"]
    assert isinstance(result.model.bn, nn.BatchNorm2d) and not result.folded
