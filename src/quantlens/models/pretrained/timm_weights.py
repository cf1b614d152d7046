"""timm's pretrained weights: the checkpoint timm would load, found in its local cache, and the
preprocessing `timm.data.resolve_data_config` gives for them.

timm looks for a model's weights (its pretrained cfg) on the Hugging Face hub (`hf_hub_id`: the
safetensors file first, then the pickle), else at a URL through torch.hub, else in a local `file`.
quantlens reads the cached file itself (safetensors, or torch.load with weights_only=True) and hands the
tensors to timm as the cfg's `state_dict`, so that timm's own checkpoint filter, input-conv adaptation and
classifier handling apply as when it loads them (`timm.models.load_pretrained`). Letting timm read a local
`file` would be safe only from timm 1.0.26, whose `load_state_dict` defaults to weights_only=True (1.0.9 to
1.0.25 default to False; earlier 1.0 releases call torch.load without it, which unpickles anything before
torch 2.6). The `state_dict` source, `get_pretrained_cfg`, `is_model` and `resolve_data_config` are the same
across timm 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from quantlens.errors import ModelError, describe
from quantlens.models.checkpoints import read_state_dict
from quantlens.models.external import import_optional
from quantlens.models.pretrained.base import ModelPreprocessing, PretrainedWeights, missing_weights
from quantlens.models.pretrained.cache import (
    hf_cache_dir,
    hf_cached_file,
    hf_repo_folder,
    huggingface_hub,
    torch_hub_checkpoint,
)

_HF_PICKLE = "pytorch_model.bin"  # what timm asks the hub for when the cfg names no file
_HF_SAFETENSORS = "model.safetensors"  # ... and the safe alternative it tries first


def _hf_filenames(filename: str | None) -> list[str]:
    """The files timm tries in a hub repository, in its order: a safetensors alternative, then the file."""
    filename = filename or _HF_PICKLE
    if filename.endswith(".safetensors"):
        return [filename]
    if filename == _HF_PICKLE:
        return [_HF_SAFETENSORS, filename]
    return [filename[:-4] + ".safetensors", filename] if filename.endswith(".bin") else [filename]


@dataclass(frozen=True)
class TimmWeights(PretrainedWeights):
    model_name: str = ""  # architecture.tag, as timm.create_model takes it
    classifier: tuple[str, ...] = ()  # the head's modules (the pretrained cfg's `classifier`)

    def build(self, *, num_classes: int, in_channels: int, options: dict) -> tuple[nn.Module, list[str]]:
        timm = import_optional("timm")
        state = read_state_dict(self.path)
        try:
            model = timm.create_model(self.model_name, pretrained=True, pretrained_cfg_overlay={"state_dict": state},
                                      num_classes=num_classes, in_chans=in_channels, **options)
        except Exception as exc:  # timm's loader or the model's own code: one line, not a traceback
            raise ModelError(f"timm cannot build {self.model_name!r} with the weights in {self.path} "
                             f"({describe(exc)})") from None
        for cfg in (getattr(model, "pretrained_cfg", None), getattr(model, "default_cfg", None)):
            if isinstance(cfg, dict):
                cfg.pop("state_dict", None)  # the model holds its own copy; keep the record small
        replaced = [] if num_classes == self.num_classes else [f"{name}.*" for name in self.classifier]
        return model, replaced


def _locate(reference: str, cfg, full_name: str) -> Path:
    """The cached checkpoint timm would load for `cfg`, or the one-line error saying what to fetch."""
    fetch = f"python -c \"import timm; timm.create_model('{full_name}', pretrained=True)\""
    if cfg.file:
        path = Path(cfg.file).expanduser()
        if path.is_file():
            return path
        raise missing_weights(reference, str(path), f"{fetch}, then copy the file to {path}")
    looked, copy = [], ""
    hub = huggingface_hub() if cfg.hf_hub_id else None
    if hub is not None:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        filenames = _hf_filenames(cfg.hf_hub_filename)
        found = hf_cached_file(hub, repo_id, filenames, revision or None)
        if found is not None:
            return found
        cache = hf_cache_dir()
        looked.append(f"{repo_id} ({' or '.join(filenames)}) in {cache}")
        copy = f", then copy the folder {hf_repo_folder(repo_id)} of its Hugging Face cache into {cache}"
    if isinstance(cfg.url, str) and cfg.url:
        path = torch_hub_checkpoint(cfg.url)
        if path.is_file():  # where timm finds it when the hub is not its source (or with TIMM_USE_OLD_CACHE)
            return path
        looked.append(str(path))
        copy = copy or f" (or download {cfg.url}), then copy the file to {path}"
    if not looked:
        raise ModelError(f"{reference}: timm's pretrained cfg for {full_name} names only a Hugging Face repository "
                         f"({cfg.hf_hub_id}), and huggingface_hub does not import here")
    raise missing_weights(reference, " and ".join(looked), fetch + copy)


def _preprocessing(timm, cfg, full_name: str) -> ModelPreprocessing:
    """timm.data.resolve_data_config for the cfg, as timm.data.transforms_imagenet_eval applies it."""
    origin = f"timm.data.resolve_data_config({full_name})"
    config = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    _, height, width = config["input_size"]
    crop_pct, mode = float(config["crop_pct"]), config["crop_mode"]
    scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    if mode == "center":  # shorter side to scale, aspect kept, then the centre
        if scale[0] != scale[1]:
            raise ModelError(f"{origin}: crop_mode 'center' with a non-square input {height}x{width} is not "
                             f"implemented in quantlens")
        resize = "shorter_side"
    elif mode == "squash":
        resize = "squash"
    else:
        raise ModelError(f"{origin}: crop_mode {mode!r} is not implemented in quantlens (center and squash are)")
    return ModelPreprocessing(size=(height, width), resize=resize, scale=scale, crop_fraction=crop_pct,
                              interpolation=config["interpolation"], antialias=True,  # timm resizes PIL images
                              mean=tuple(config["mean"]), std=tuple(config["std"]), origin=origin)


def resolve_timm(name: str) -> TimmWeights:
    """`timm:<name>` (an architecture, or architecture.tag) with its cached pretrained weights."""
    reference = f"timm:{name}"
    if ":" in name:
        raise ModelError(f"{reference}: pretrained weights load for registered timm names (architecture or "
                         f"architecture.tag), not {name.partition(':')[0]}: sources")
    timm = import_optional("timm")
    if not timm.models.is_model(name):
        raise ModelError(f"timm has no model {name!r}")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # an architecture with a tag it does not have
        raise ModelError(f"{reference}: {exc}") from None
    if cfg is None or not cfg.has_weights:
        raise ModelError(f"timm has no pretrained weights for {name!r}")
    full_name = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if getattr(cfg, "custom_load", False):
        raise ModelError(f"{reference}: timm loads {full_name}'s weights with the model's own loader (custom_load: "
                         f"not a state dict), which quantlens does not run")
    classifier = cfg.classifier
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    return TimmWeights(reference=reference, label=f"timm {full_name}", path=_locate(reference, cfg, full_name),
                       num_classes=int(cfg.num_classes), preprocessing=_preprocessing(timm, cfg, full_name),
                       model_name=full_name, classifier=classifier)
