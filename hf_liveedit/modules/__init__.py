"""LiveEdit's trainable modules: cross-attention, expert generator, feature extractors."""

from __future__ import annotations

from .attention import CrossAttention
from .extractor import FeatureExtractor
from .generator import ExpertGenerator
from .image_key import ImageKey
from .liveedit import ExpertBatch, InputFeatures, LiveEditModules
from .spans import Spans

__all__ = [
    "CrossAttention",
    "ExpertBatch",
    "ExpertGenerator",
    "FeatureExtractor",
    "ImageKey",
    "InputFeatures",
    "LiveEditModules",
    "Spans",
]
