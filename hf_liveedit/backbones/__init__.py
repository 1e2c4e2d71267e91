"""Backbone adapters: one small file per supported VLLM family.

Cross-attention VLLMs such as Mllama are out of scope: their images never enter the decoder's
sequence, so there are no image positions at layer ``l_e`` to route on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import BackboneAdapter
from .blip2 import Blip2Adapter
from .idefics3 import Idefics3Adapter
from .llava import LlavaAdapter
from .qwen2_vl import Qwen2VLAdapter

ADAPTERS: tuple[type[BackboneAdapter], ...] = (
    LlavaAdapter,
    Blip2Adapter,
    Idefics3Adapter,
    Qwen2VLAdapter,
)


def supported_model_classes() -> list[str]:
    """Names of the transformers classes LiveEdit can wrap."""
    return [name for adapter in ADAPTERS for name in adapter.model_class_names]


def get_backbone_adapter(model: nn.Module, processor: Any | None = None) -> BackboneAdapter:
    """The adapter for ``model``'s class; ``TypeError`` naming the supported classes otherwise."""
    name = type(model).__name__
    for adapter in ADAPTERS:
        if name in adapter.model_class_names:
            return adapter(model, processor)
    raise TypeError(
        f"LiveEdit does not support {name}. Supported classes: {', '.join(supported_model_classes())}. "
        "(Cross-attention VLLMs such as Mllama cannot be routed the LiveEdit way.)"
    )


__all__ = ["ADAPTERS", "BackboneAdapter", "get_backbone_adapter", "supported_model_classes"]
