"""The in-house model zoo: importing this package registers every model in `MODELS`.

Each family lives in its own module and registers its factories with `@register_model`; no
third-party model library (torchvision, timm) is needed.
"""

from quantlens.models.zoo import (  # noqa: F401  (imported for their registrations)
    compact_cnn,
    efficientnet,
    mobilenet_v2,
    resnet,
    resnet_cifar,
    vgg,
    vit,
)
