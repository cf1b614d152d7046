"""torchvision's pretrained weights: the weights enum entry a name selects, its checkpoint in torch.hub's
cache, and the preprocessing its `transforms()` preset (ImageClassification) describes.

The model is built with weights=None and the weights' class count, and the checkpoint read with
quantlens's loader (torch.load with weights_only=True, strict keys, shapes and dtypes): torchvision's own
`weights.get_state_dict()` goes through torch.hub, which unpickles with weights_only=False by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from quantlens.errors import ModelError, QuantlensError, describe
from quantlens.models.checkpoints import load_weights
from quantlens.models.external import import_optional
from quantlens.models.pretrained.base import ModelPreprocessing, PretrainedWeights, missing_weights
from quantlens.models.pretrained.cache import torch_hub_checkpoint

# Builder arguments torchvision sets itself when it is given weights (`_ovewrite_named_param` in its
# builders); building with weights=None must set them too, or the model differs from the one the weights
# were trained as (GoogLeNet and Inception v3 re-normalise their input only with transform_input).
_SET_WITH_WEIGHTS = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


def _builder_arguments(arch: str, weights) -> dict:
    arguments = dict(_SET_WITH_WEIGHTS.get(arch, {}))
    if arch.startswith("vit_"):  # the weights' input size (384 or 518 for the SWAG weights)
        arguments["image_size"] = weights.meta["min_size"][0]
    elif arch.startswith("maxvit"):
        arguments["input_size"] = weights.meta["min_size"]
    return arguments


@dataclass(frozen=True)
class TorchvisionWeights(PretrainedWeights):
    arch: str = ""
    builder_arguments: dict = field(default_factory=dict)

    def _get(self, num_classes: int, options: dict) -> nn.Module:
        import_optional("torchvision")
        from torchvision import models

        try:
            return models.get_model(self.arch, weights=None, num_classes=num_classes,
                                    **{**self.builder_arguments, **options})
        except Exception as exc:  # the builder rejects an option: one line, not a traceback
            raise ModelError(f"torchvision cannot build {self.arch!r} ({describe(exc)})") from None

    def build(self, *, num_classes: int, in_channels: int, options: dict) -> tuple[nn.Module, list[str]]:
        model = self._get(self.num_classes, options)
        try:
            load_weights(model, self.path)
        except QuantlensError as exc:
            raise ModelError(f"{self.reference}: {exc}") from None
        if num_classes == self.num_classes:
            return model, []
        # A head for `num_classes`: every tensor whose shape does not depend on the class count is copied
        # from the loaded model; the others (the classifier, an auxiliary one) keep their initial values.
        fresh = self._get(num_classes, options)
        wanted = fresh.state_dict()
        kept = {k: v for k, v in model.state_dict().items() if k in wanted and wanted[k].shape == v.shape}
        fresh.load_state_dict(kept, strict=False)
        return fresh, sorted(set(wanted) - set(kept))


def _preprocessing(weights) -> ModelPreprocessing:
    """The weights' ImageClassification preset: resize the shorter side to resize_size, centre crop
    crop_size, normalise with mean/std."""
    origin = f"torchvision {weights!r} transforms"
    preset = weights.transforms()
    if not all(hasattr(preset, a) for a in ("crop_size", "resize_size", "mean", "std", "interpolation")):
        raise ModelError(f"{origin}: {type(preset).__name__} is not torchvision's image classification preset")
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    interpolation = getattr(preset.interpolation, "value", preset.interpolation)  # InterpolationMode -> 'bilinear'
    return ModelPreprocessing(size=(crop, crop), resize="shorter_side", scale=(resize, resize),
                              crop_fraction=crop / resize, interpolation=str(interpolation),
                              # None is torchvision's legacy value: antialiased for PIL images, which the
                              # weights were evaluated on
                              antialias=getattr(preset, "antialias", True) is not False,
                              mean=tuple(preset.mean), std=tuple(preset.std), origin=origin)


def resolve_torchvision(name: str) -> TorchvisionWeights:
    """`torchvision:<arch>` (its DEFAULT weights) or `torchvision:<arch>@<entry>` (e.g. IMAGENET1K_V1, or
    the enum's full name ResNet18_Weights.IMAGENET1K_V1) with its cached checkpoint."""
    reference = f"torchvision:{name}"
    arch, _, entry = name.partition("@")
    import_optional("torchvision")
    from torchvision import models

    try:
        enum = models.get_model_weights(arch)
    except ValueError as exc:  # no such model, or a builder without weights
        raise ModelError(f"torchvision has no pretrained weights for {arch!r} ({exc})") from None
    try:
        weights = enum.verify(entry or "DEFAULT")
    except KeyError:
        raise ModelError(f"{reference}: {enum.__name__} has no entry {entry!r} (it has "
                         f"{', '.join(member.name for member in enum)}, or DEFAULT)") from None
    path = torch_hub_checkpoint(weights.url)
    if not path.is_file():
        raise missing_weights(reference, str(path), f"python -c \"import torchvision; torchvision.models.get_model("
                                                    f"'{arch}', weights='{weights!r}')\" (or download {weights.url}), "
                                                    f"then copy the file to {path}")
    return TorchvisionWeights(reference=reference, label=f"torchvision {weights!r}", path=path,
                              num_classes=len(weights.meta["categories"]), preprocessing=_preprocessing(weights),
                              arch=arch, builder_arguments=_builder_arguments(arch, weights))
