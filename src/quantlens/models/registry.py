"""The model zoo's registry: a name -> `ModelCard` table, filled by `@register_model`.

Every factory has the same signature, `factory(*, num_classes, in_channels, image_size, **options)`,
so the experiment layer can build any registered model for any dataset without special cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from quantlens.registry import Registry

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelCard:
    """What the experiment layer needs to know about a model before building it.

    `input_size` is the square input side the architecture was designed for (used when the data
    has no uniform size of its own); `min_input_size` is the smallest side it accepts.
    """

    name: str
    factory: ModelFactory
    input_size: int
    min_input_size: int
    description: str

    def build(self, *, num_classes: int, in_channels: int, image_size: int | None = None, **options) -> nn.Module:
        return self.factory(num_classes=num_classes, in_channels=in_channels,
                            image_size=image_size or self.input_size, **options)


MODELS: Registry[ModelCard] = Registry("model")


def register_model(name: str, *, input_size: int, min_input_size: int = 8,
                   description: str = "") -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering `factory` under `name` (the factory itself is returned unchanged)."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        doc = description or (factory.__doc__ or "").strip().splitlines()[0]
        MODELS.add(name, ModelCard(name, factory, input_size, min_input_size, doc))
        return factory

    return decorate
