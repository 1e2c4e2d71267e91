"""Backbone adapters: one small file per supported VLLM family.

A model is matched by class first: its class or any base class (so user subclasses work) among
the adapters' ``model_class_names``; then by ``config.model_type`` (e.g. remote-code classes
built on a supported config), if the adapter finds the decoder layers where that family has them.

Cross-attention VLLMs such as Mllama are out of scope: their images never enter the decoder's
sequence, so there are no image positions at layer ``l_e`` to route on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import BackboneAdapter
from .blip2 import Blip2Adapter
from .gemma3 import Gemma3Adapter
from .idefics3 import Idefics3Adapter
from .instructblip import InstructBlipAdapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .paligemma import PaliGemmaAdapter
from .qwen2_5_vl import Qwen2_5_VLAdapter
from .qwen2_vl import Qwen2VLAdapter

ADAPTERS: tuple[type[BackboneAdapter], ...] = (
    LlavaAdapter,
    LlavaNextAdapter,
    LlavaOnevisionAdapter,
    Blip2Adapter,
    InstructBlipAdapter,
    Idefics3Adapter,
    Qwen2VLAdapter,
    Qwen2_5_VLAdapter,
    Gemma3Adapter,
    PaliGemmaAdapter,
)


def supported_model_classes() -> list[str]:
    """Names of the transformers classes LiveEdit can wrap (and subclass of them)."""
    return [name for adapter in ADAPTERS for name in adapter.model_class_names]


def get_backbone_adapter(model: nn.Module, processor: Any | None = None) -> BackboneAdapter:
    """The adapter for ``model``'s family, found by class hierarchy, then by ``model_type``.

    Args:
        model: the VLLM to wrap.
        processor: its processor (optional; needed to build edit inputs).

    Raises:
        TypeError: no adapter fits; the message names the supported classes.
    """
    by_class = {name: adapter for adapter in ADAPTERS for name in adapter.model_class_names}
    for cls in type(model).__mro__:  # most derived first: a subclass's own family wins
        if cls.__name__ in by_class:
            return by_class[cls.__name__](model, processor)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter_class in ADAPTERS:
        if model_type in adapter_class.model_types:
            adapter = adapter_class(model, processor)
            try:  # same config, other class: only if the layers are where the family has them
                adapter.decoder_layers()
            except AttributeError:
                break
            return adapter
    described = type(model).__name__ + (f" (model_type {model_type!r})" if model_type else "")
    raise TypeError(
        f"LiveEdit does not support {described}. Supported classes (and their subclasses): "
        f"{', '.join(supported_model_classes())}. (Cross-attention VLLMs such as Mllama cannot "
        "be routed the LiveEdit way.)"
    )


__all__ = ["ADAPTERS", "BackboneAdapter", "get_backbone_adapter", "supported_model_classes"]
