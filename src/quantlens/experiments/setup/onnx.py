"""An ONNX file's set-up: its layout, input size, statistics and outputs read from the file where it says
them (the config wins), verified on real samples; its PyTorch form (onnx2torch) only when the run needs one."""

from __future__ import annotations

from quantlens import events
from quantlens.data.source import ImageSource
from quantlens.data.transforms import Preprocessing
from quantlens.devices import resolve_device
from quantlens.errors import ModelError
from quantlens.experiments.setup.base import (
    Setup,
    checked,
    declared_normalization,
    image_size,
    needs_torch_form,
    probe,
    scaled,
)
from quantlens.experiments.spec import ExperimentSpec
from quantlens.models.build import ModelRef


def prepare_onnx(spec: ExperimentSpec, source: ImageSource, ref: ModelRef) -> Setup:
    from quantlens.models.onnx import open_onnx_model, resolve_layout

    m = spec.model
    if m.weights:
        raise ModelError("model.weights: an ONNX file carries its own weights; leave model.weights (--weights) out")
    if spec.train.enabled:
        raise ModelError(f"train: {ref.name} is an ONNX file; it is evaluated, simulated and benchmarked as it is, "
                         f"not trained")
    if m.options:
        raise ModelError(f"model.options do not apply to an ONNX file ({ref.name})")
    file = ref.onnx_file()
    layout, layout_origin = resolve_layout(file, None if m.input_layout == "auto" else m.input_layout)
    channels, height, width = file.input.dims(layout)
    if channels is None:
        channels = spec.data.channels or source.channels
    elif spec.data.channels and spec.data.channels != channels:
        raise ModelError(f"{ref.name} takes {channels}-channel input ({layout.upper()}) but data.channels is "
                         f"{spec.data.channels}")
    if channels not in (1, 3):
        raise ModelError(f"{ref.name} takes {channels}-channel input ({layout.upper()} {list(file.input.shape)}); "
                         f"quantlens feeds 1- or 3-channel images (is the layout right? --input-layout)")
    if height is not None and width is not None:
        if spec.data.image_size and (height, width) != (spec.data.image_size, spec.data.image_size):
            raise ModelError(f"{ref.name} takes {height}x{width} images but data.image_size is {spec.data.image_size}")
        size = (height, width)
    else:
        size = image_size(spec, source, ref, None)
    if file.num_classes is not None and file.num_classes != source.num_classes:
        raise ModelError(f"{ref.name} returns {file.num_classes} classes but {source.spec} has {source.num_classes}")
    declared = declared_normalization(spec)
    hints = file.hints
    if declared is not None:
        stats, origin = declared
    elif hints.mean is not None or hints.pixel_scale is not None:
        keys = sorted({hints.origin[k] for k in ("mean", "std", "pixel_scale") if k in hints.origin})
        stats = scaled(hints.mean, hints.std, hints.pixel_scale)
        origin = f"the file's metadata ({', '.join(keys)})"
    else:
        stats, origin = source.normalization.for_channels(channels), f"{source.name}'s default statistics"
        events.warn(f"{ref.name} says nothing about the input statistics it expects; {origin} are used (mean "
                    f"{list(stats.mean)}, std {list(stats.std)} on [0, 1] pixels): give --mean/--std/--pixel-scale "
                    f"if the model expects other ones")
    preprocessing = Preprocessing(channels, size, checked(stats, channels, origin))
    opened = open_onnx_model(file, layout=layout, layout_origin=layout_origin,
                             declared_output=None if m.output == "auto" else m.output,
                             probe=probe(source, preprocessing, avoid_batch=file.input.batch),
                             num_classes=source.num_classes, convert=needs_torch_form(spec))
    events.note(f"{ref.name}: {layout.upper()} input ({layout_origin}); {opened.output.describe()}")
    model = opened.model.to(resolve_device(spec.device))
    return Setup(model, preprocessing, None, opened.output, opened, origin)


