"""The embedded default backbone: a LLaVA built from pretrained parts that ship in registry packages.

``build_default_backbone()`` assembles it once into the cache (no training: the projector ships
with the package, so every machine gets the same weights); ``load_default_backbone()`` returns
``(model, processor)``. Importing this package registers the EfficientNet-Lite vision classes with
transformers' Auto classes, which ``from_pretrained`` of the saved LLaVA needs.
"""

from __future__ import annotations

from ..packages import MissingPackageError
from .build import (
    build_default_backbone,
    default_backbone_built,
    default_cache_dir,
    load_default_backbone,
    packaged_projector_dir,
)
from .vision import EfficientNetLiteVisionConfig, EfficientNetLiteVisionModel

__all__ = [
    "EfficientNetLiteVisionConfig",
    "EfficientNetLiteVisionModel",
    "MissingPackageError",
    "build_default_backbone",
    "default_backbone_built",
    "default_cache_dir",
    "load_default_backbone",
    "packaged_projector_dir",
]
