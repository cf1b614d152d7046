"""Options shared by several `quantlens` commands (their names, defaults and help in one place)."""

from __future__ import annotations

from typing import Literal

import typer

DeviceOption = typer.Option("auto", "--device", help="auto (the GPU when there is one) | cpu | cuda | cuda:<i>")
OutOption = typer.Option(None, "--out", help="run root (default: $EXPERIMENT_ROOT, else ./runs)")
CheckOption = typer.Option(False, "--check", help="validate the config, data, model, weights and backends without "
                                                  "running anything; write nothing; exit 0 (valid) or 2")
LimitOption = typer.Option(None, "--limit", min=1, metavar="N",
                           help="evaluate a stratified (by class), seeded subset of N samples (eval.max_samples), "
                                "drawn after calibration samples are set aside; default: every sample")
PositiveClassOption = typer.Option(None, "--positive-class", metavar="CLASS",
                                   help="binary tasks: the class treated as positive (sensitivity, specificity, "
                                        "AUROC, F1), by name or index (eval.positive_class); default: the second "
                                        "class (index 1)")

Split = Literal["auto", "train", "val", "test", "all"]
MODEL_HELP = ("zoo name, python:<module>:<callable>, onnx:<file> (or a path ending in .onnx), timm:<name>, "
              "torchvision:<name>")
OutputKind = Literal["auto", "logits", "probabilities", "log_probabilities"]
Layout = Literal["auto", "nchw", "nhwc"]
OutputKindOption = typer.Option("auto", "--output-kind", help="what the model returns; auto: detected (probabilities: "
                                                               "rows in [0, 1] summing to 1), never softmaxed twice")
MeanOption = typer.Option(None, help="per-channel mean the model expects, comma-separated, in --pixel-scale units")
StdOption = typer.Option(None, help="per-channel std, comma-separated (with --mean)")
PixelScaleOption = typer.Option(None, help="a white pixel's value for the model: 1 ([0, 1]) or 255 (raw pixels)")
LayoutOption = typer.Option("auto", "--input-layout", help="an ONNX file's input layout (auto: from the file)")
PretrainedOption = typer.Option(False, "--pretrained", help="timm:/torchvision: models: the weights the package ships, "
                                                            "from its local cache (never downloaded), with the "
                                                            "model's own resize, crop and statistics")


def csv_list(value: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [v.strip() for v in value.split(",") if v.strip()]


def given(**options) -> dict:
    """The options given on the command line (None: not given, the recipe's default applies)."""
    return {k: v for k, v in options.items() if v is not None}


def model_block(name: str, weights: str | None, output: str, mean: str | None, std: str | None,
                pixel_scale: float | None, layout: str, pretrained: bool) -> dict:
    """The `model:` block the shared model options describe."""
    return {"name": name, "weights": weights, "output": output, "input_layout": layout, "pretrained": pretrained,
            **given(mean=mean, std=std, pixel_scale=pixel_scale)}
