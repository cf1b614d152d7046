"""Write the pretrained ResNet-20 as ONNX files built the ways other tools build them, and score each on
ONNX Runtime directly, with no quantlens code in the scoring path: what `quantlens eval/simulate/bench
--model <file>` must reproduce on files it did not write.

    python examples/foreign_onnx.py OUT_DIR [--weights W] [--data FOLDER]

Files written to OUT_DIR:
  legacy-opset10.onnx  TorchScript exporter at opset 10, weights moved into Constant nodes, the flatten
                       written as Shape/Gather/Concat/Reshape, 0..255 pixels normalised inside the graph
                       (quantlens needs `--pixel-scale 255`: the file cannot say it)
  nhwc-softmax.onnx    channels-last input with a Transpose first, a Softmax last, a dynamic batch axis
  fixed-batch1.onnx    NCHW at a fixed batch of 1, its input statistics in the file's metadata

With --data (an image folder such as ../shared/data/cifar10-test-jpeg), every file is run on ONNX
Runtime over all of its images -- decoded with Pillow, normalised here -- and its top-1 and mean
confidence printed.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WEIGHTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "resnet20-cifar10" / "resnet20-12fca82f.th"


def _resnet20(weights: Path) -> torch.nn.Module:
    from quantlens.models.build import build_model
    from quantlens.models.checkpoints import load_weights

    model = build_model("resnet20_cifar", num_classes=10, in_channels=3, image_size=32)
    return load_weights(model, weights).eval()


class _RawPixels(torch.nn.Module):
    """0..255 NCHW pixels in; normalised inside, flattened with view (the legacy exporter's Reshape)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)

    def forward(self, x):
        net = self.net
        z = net.relu(net.bn1(net.conv1((x - self.mean) / self.std)))
        z = net.avgpool(net.layer3(net.layer2(net.layer1(z))))  # (B, 64, 1, 1)
        return net.linear(z.view(z.size(0), -1))


class _ChannelsLastSoftmax(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):  # (B, H, W, C) normalised -> (B, classes) probabilities
        return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=1)


def _constants_for_initializers(path: Path) -> None:
    """Rewrite `path` with every initializer as a Constant node (what some old converters write)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in graph.initializer]
    names = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in names]
    nodes = [*constants, *graph.node]
    del graph.initializer[:], graph.input[:], graph.node[:]
    graph.input.extend(inputs)
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_files(out: Path, weights: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, what the file takes: 'raw' NCHW 0..255, 'nhwc' or 'nchw' normalised)."""
    import onnx
    from onnx import helper

    out.mkdir(parents=True, exist_ok=True)
    net = _resnet20(weights)
    example = torch.zeros(2, 3, 32, 32)
    files = {}
    legacy = out / "legacy-opset10.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_RawPixels(net).eval(), (example,), str(legacy), dynamo=False, opset_version=10,
                          input_names=["data"], output_names=["scores"], dynamic_axes={"data": {0: "N"}})
    _constants_for_initializers(legacy)
    files["legacy-opset10"] = (legacy, "raw")

    nhwc = out / "nhwc-softmax.onnx"
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(_ChannelsLastSoftmax(net).eval(), (example.permute(0, 2, 3, 1),), str(nhwc), dynamo=True,
                      input_names=["image"], output_names=["probabilities"], dynamic_shapes=({0: batch},),
                      external_data=False, verbose=False)
    files["nhwc-softmax"] = (nhwc, "nhwc")

    fixed = out / "fixed-batch1.onnx"
    torch.onnx.export(net, (example[:1],), str(fixed), dynamo=True, input_names=["input"], output_names=["logits"],
                      external_data=False, verbose=False)
    proto = onnx.load(str(fixed))
    helper.set_model_props(proto, {"mean": ",".join(map(str, MEAN)), "std": ",".join(map(str, STD))})
    onnx.save(proto, str(fixed))
    files["fixed-batch1"] = (fixed, "nchw")
    return files


def score(path: Path, takes: str, folder: Path) -> tuple[float, float, int]:
    """(top-1, mean confidence, images) of the file on ONNX Runtime over every image of `folder`."""
    import onnxruntime as ort
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items = [(f, label) for label, name in enumerate(classes) for f in sorted((folder / name).iterdir())]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f, _ in items])  # (N, H, W, 3)
    labels = np.array([label for _, label in items])
    if takes == "raw":
        feed = pixels.transpose(0, 3, 1, 2)
    else:
        normalised = (pixels / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        feed = normalised if takes == "nhwc" else normalised.transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else 500
    outputs = np.concatenate([session.run(None, {name: np.ascontiguousarray(feed[i:i + step], np.float32)})[0]
                              for i in range(0, len(feed), step)])
    probs = outputs if np.allclose(outputs.sum(1), 1, atol=1e-4) and outputs.min() >= 0 else \
        torch.softmax(torch.from_numpy(outputs).double(), 1).numpy()
    return float((probs.argmax(1) == labels).mean()), float(probs.max(1).mean()), len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    for name, (path, takes) in write_files(args.out, args.weights.resolve()).items():
        line = f"{name}: {path}"
        if args.data is not None:
            top1, confidence, n = score(path, takes, args.data)
            line += f"  ONNX Runtime directly: top-1 {top1:.4f}, mean confidence {confidence:.4f} on {n} images"
        print(line)


if __name__ == "__main__":
    main()
