import inspect
import typing
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Callable, Dict, Optional

from torchvision.tinynet import TinyNet
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification


@dataclass
class Weights:
    url: str
    transforms: Callable
    meta: Dict[str, Any]


class WeightsEnum(Enum):
    @classmethod
    def verify(cls, obj):
        if obj is not None:
            if type(obj) is str:
                obj = cls[obj.replace(cls.__name__ + ".", "")]
            elif not isinstance(obj, cls):
                raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but received "
                                f"{obj.__class__.__name__}.")
        return obj

    def get_state_dict(self, *args, **kwargs):  # the real one: torch.hub.load_state_dict_from_url
        raise RuntimeError("stand-in torchvision: no network, and torch.hub unpickles without weights_only")

    def __repr__(self):
        return f"{self.__class__.__name__}.{self._name_}"

    @property
    def url(self):
        return self.value.url

    @property
    def transforms(self):
        return self.value.transforms

    @property
    def meta(self):
        return self.value.meta


_TEN = [f"class{i}" for i in range(10)]


class TinyNet_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(url="https://download.example.invalid/models/tinynet-1a2b3c4d.pth",
                            transforms=partial(ImageClassification, crop_size=16, resize_size=18),
                            meta={"categories": _TEN, "min_size": (1, 1)})
    IMAGENET1K_V2 = Weights(url="https://download.example.invalid/models/tinynet-5e6f7a8b.pth",
                            transforms=partial(ImageClassification, crop_size=16, resize_size=20,
                                               interpolation=InterpolationMode.BICUBIC, mean=(0.5, 0.5, 0.5),
                                               std=(0.25, 0.25, 0.25)),
                            meta={"categories": _TEN, "min_size": (1, 1)})
    IN1K = Weights(url="https://download.example.invalid/models/tinynet_in1k-9c8d7e6f.pth",
                   transforms=partial(ImageClassification, crop_size=16, resize_size=18),
                   meta={"categories": [f"c{i}" for i in range(1000)], "min_size": (1, 1)})
    DEFAULT = IMAGENET1K_V2


def tinynet(*, weights: Optional[TinyNet_Weights] = None, progress: bool = True, **kwargs) -> TinyNet:
    weights = TinyNet_Weights.verify(weights)
    if weights is not None:
        kwargs["num_classes"] = len(weights.meta["categories"])
    model = TinyNet(head_name="fc", **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


class GoogLeNet_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(url="https://download.example.invalid/models/googlenet-0a1b2c3d.pth",
                            transforms=partial(ImageClassification, crop_size=16, resize_size=18),
                            meta={"categories": _TEN, "min_size": (1, 1)})
    DEFAULT = IMAGENET1K_V1


def googlenet(*, weights: Optional[GoogLeNet_Weights] = None, progress: bool = True, **kwargs) -> TinyNet:
    weights = GoogLeNet_Weights.verify(weights)
    if weights is not None:  # what the real builder sets when it is given weights
        kwargs.setdefault("transform_input", True)
        kwargs["aux_logits"], kwargs["init_weights"] = True, False
        kwargs["num_classes"] = len(weights.meta["categories"])
    transform_input = kwargs.pop("transform_input", False)
    kwargs.pop("aux_logits", None), kwargs.pop("init_weights", None)
    model = TinyNet(head_name="fc", **kwargs)
    model.transform_input = transform_input  # the real model re-normalises its input when this is set
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


def plainnet(**kwargs):  # a builder without weights
    return TinyNet(**kwargs)


BUILTIN_MODELS = {"tinynet": tinynet, "googlenet": googlenet, "plainnet": plainnet}


def get_model_builder(name):
    try:
        return BUILTIN_MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown model {name}") from None


def get_model(name, **config):
    return get_model_builder(name)(**config)


def get_model_weights(name):
    fn = get_model_builder(name) if isinstance(name, str) else name
    sig = inspect.signature(fn)
    if "weights" not in sig.parameters:
        raise ValueError("The method is missing the 'weights' argument.")
    ann = sig.parameters["weights"].annotation
    for candidate in (ann, *typing.get_args(ann)):
        if isinstance(candidate, type) and issubclass(candidate, WeightsEnum):
            return candidate
    raise ValueError("The WeightsEnum class for the specific method couldn't be retrieved.")
