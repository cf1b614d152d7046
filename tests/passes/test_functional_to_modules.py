"""Functional operations of user models become quantizable modules; untraceable models are left alone."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from quantlens.models.build import build_model
from quantlens.nn.ops import Add, MatMul
from quantlens.passes import functional_to_modules


class FunctionalNet(nn.Module):
    def __init__(self, num_classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = torch.relu(y + self.c2(y))  # residual written as a function
        a = y.mean((2, 3))  # (B, 8)
        attention = torch.softmax((a @ a.t()) * 0.5, dim=-1)  # (B, B): the scalar multiply stays a function
        return self.fc(torch.matmul(attention, a))


def test_functional_ops_become_modules_and_outputs_are_unchanged():
    model = FunctionalNet().eval()
    result = functional_to_modules(model)
    assert result.converted == {"relu": 2, "add": 1, "matmul": 2, "softmax": 1} and result.skipped is None
    assert isinstance(result.model.get_submodule("fx_add_0"), Add)
    assert isinstance(result.model.get_submodule("fx_matmul_1"), MatMul)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(result.model(x), model(x))
    assert set(model.state_dict()) == set(result.model.state_dict())


def test_zoo_op_modules_are_kept_not_inlined():
    for name in ("resnet20_cifar", "mobilenet_v2", "efficientnet_b0"):
        result = functional_to_modules(build_model(name, num_classes=3, in_channels=1, image_size=32))
        assert result.converted == {} and result.skipped is None, name


def test_untraceable_model_is_returned_with_the_reason():
    class Branchy(nn.Module):
        def forward(self, x):
            return x + 1 if x.sum() > 0 else x * 2

    model = Branchy()
    result = functional_to_modules(model)
    assert result.model is model and "not traceable by torch.fx" in result.skipped


def test_simulation_quantizes_a_user_models_functional_adds(tmp_path):
    from quantlens.experiments.runner import run_experiment
    from quantlens.experiments.spec import spec_from_dict

    module_file = tmp_path / "user_net.py"
    source = (
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.c1 = nn.Conv2d(in_channels, 8, 3, padding=1)\n"
        "        self.c2 = nn.Conv2d(8, 8, 3, padding=1)\n"
        "        self.fc = nn.Linear(8, num_classes)\n"
        "    def forward(self, x):\n"
        "        y = F.relu(self.c1(x))\n"
        "        y = F.relu(y + self.c2(y))\n"
        "        return self.fc(y.mean((2, 3)))\n")
    module_file.write_text(source)
    spec = spec_from_dict({"data": {"source": "digits"}, "model": {"name": f"python:{module_file}:Net"},
                           "output": {"root": str(tmp_path / "runs")},
                           "analysis": {"layerwise_samples": 32, "compliance_samples": 8},
                           "quantization": [{"format": "int8", "calibration_samples": 64}]})
    outcome = run_experiment(spec)
    folder = outcome.run_dir / "quantization" / outcome.simulation.formats[0].folder
    coverage = json.loads((folder / "coverage.json").read_text())
    assert coverage["functional_ops"]["converted"] == {"relu": 2, "add": 1}
    tensors = {(t["layer"], t["tensor"]) for t in json.loads((folder / "compliance.json").read_text())["tensors"]}
    assert {("fx_add_0", "input 0"), ("fx_add_0", "input 1")} <= tensors
