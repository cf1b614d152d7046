import dataclasses
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from timm.tinynet import TinyNet


@dataclass
class PretrainedCfg:
    url: Optional[str] = None
    file: Optional[str] = None
    state_dict: Optional[Dict[str, Any]] = None
    hf_hub_id: Optional[str] = None
    hf_hub_filename: Optional[str] = None
    source: Optional[str] = None
    architecture: Optional[str] = None
    tag: Optional[str] = None
    custom_load: bool = False
    input_size: Tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    num_classes: int = 1000
    first_conv: Optional[str] = None
    classifier: Optional[str] = None

    @property
    def has_weights(self):
        return self.url or self.file or self.hf_hub_id

    def to_dict(self, remove_source=False, remove_null=True):
        return {k: v for k, v in dataclasses.asdict(self).items() if not (remove_null and v is None)}


_ENTRYPOINTS = {"tinynet": TinyNet, "tinynet_nocfg": TinyNet}
_HEAD = dict(first_conv="conv_stem", classifier="head")
_CFGS = {  # 'arch.tag' -> cfg; an architecture's first tag is its default
    "tinynet.hf_in10": PretrainedCfg(hf_hub_id="timm/tinynet.hf_in10", input_size=(3, 16, 16), num_classes=10,
                                     mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), **_HEAD),
    "tinynet.url_in10": PretrainedCfg(url="https://example.invalid/tinynet/tinynet_url-0f1e2d3c.pth",
                                      input_size=(3, 20, 20), crop_pct=0.8, crop_mode="squash",
                                      interpolation="bilinear", num_classes=10, **_HEAD),
    "tinynet.border_in10": PretrainedCfg(hf_hub_id="timm/tinynet.border_in10", crop_mode="border", num_classes=10,
                                         **_HEAD),
    "tinynet.hf_in1k": PretrainedCfg(hf_hub_id="timm/tinynet.hf_in1k", input_size=(3, 16, 16), **_HEAD),
}
_model_pretrained_cfgs = {}
_model_default_cfgs = set()
for _name, _cfg in _CFGS.items():
    _arch, _tag = _name.split(".", 1)
    _cfg = dataclasses.replace(_cfg, architecture=_arch, tag=_tag)
    if _arch not in _model_default_cfgs:
        _model_default_cfgs.add(_arch)
        _model_pretrained_cfgs[_arch] = _cfg
    _model_pretrained_cfgs[_name] = _cfg


def split_model_name_tag(model_name, no_tag=""):
    model_name, *tag_list = model_name.split(".", 1)
    return model_name, tag_list[0] if tag_list else no_tag


def is_model(model_name):
    return split_model_name_tag(model_name)[0] in _ENTRYPOINTS


def get_pretrained_cfg(model_name, allow_unregistered=True):
    if model_name in _model_pretrained_cfgs:
        return deepcopy(_model_pretrained_cfgs[model_name])
    arch_name, tag = split_model_name_tag(model_name)
    if arch_name in _model_default_cfgs:
        raise RuntimeError(f"Invalid pretrained tag ({tag}) for {arch_name}.")
    if allow_unregistered:
        return None
    raise RuntimeError(f"Model architecture ({arch_name}) has no pretrained cfg registered.")


def load_pretrained(model, pretrained_cfg=None, num_classes=1000, in_chans=3, filter_fn=None, strict=True,
                    cache_dir=None):
    if pretrained_cfg.get("state_dict") is not None:
        state_dict = dict(pretrained_cfg["state_dict"])
    elif pretrained_cfg.get("file"):
        state_dict = torch.load(pretrained_cfg["file"], map_location="cpu", weights_only=True)
    else:  # the real timm downloads from the hub or the URL here
        raise RuntimeError("stand-in timm: no network, and no state_dict or file to load")
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    conv = pretrained_cfg.get("first_conv")
    if conv and in_chans != 3:
        if in_chans == 1:  # timm's adapt_input_conv: the RGB filters summed
            state_dict[conv + ".weight"] = state_dict[conv + ".weight"].sum(dim=1, keepdim=True)
        else:
            del state_dict[conv + ".weight"]
            strict = False
    classifier = pretrained_cfg.get("classifier")
    if classifier and num_classes != pretrained_cfg["num_classes"]:
        state_dict.pop(classifier + ".weight", None)
        state_dict.pop(classifier + ".bias", None)
        strict = False
    model.load_state_dict(state_dict, strict=strict)


def create_model(model_name, pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None,
                 checkpoint_path=None, cache_dir=None, scriptable=None, exportable=None, no_jit=None, **kwargs):
    arch, tag = split_model_name_tag(model_name)
    if arch not in _ENTRYPOINTS:
        raise RuntimeError(f"Unknown model ({model_name})")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cfg = get_pretrained_cfg(model_name) or PretrainedCfg(architecture=arch)
    overlay = dict(pretrained_cfg_overlay or {})
    if any(overlay.get(k) is not None for k in ("url", "file", "state_dict", "hf_hub_id")):
        overlay.setdefault("custom_load", False)
    cfg = dataclasses.replace(cfg, **overlay).to_dict()
    model = _ENTRYPOINTS[arch](**kwargs)
    model.pretrained_cfg = cfg
    model.default_cfg = model.pretrained_cfg
    if pretrained:
        load_pretrained(model, cfg, num_classes=model.num_classes, in_chans=kwargs.get("in_chans", 3))
    return model
