"""Backbone specs: one small file per supported VLLM family (what LiveEdit must know of it).

A model is matched by class first: its class or any base class (so user subclasses work) among
the specs' ``model_class_names``; then by ``config.model_type`` (e.g. remote-code classes
built on a supported config), if the spec finds the decoder layers where that family has them.

Cross-attention VLLMs such as Mllama are out of scope: their images never enter the decoder's
sequence, so there are no image positions at layer ``l_e`` to route on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import BackboneSpec
from .blip2 import Blip2Spec
from .gemma3 import Gemma3Spec
from .idefics3 import Idefics3Spec
from .instructblip import InstructBlipSpec
from .llava import LlavaSpec
from .llava_next import LlavaNextSpec
from .llava_onevision import LlavaOnevisionSpec
from .paligemma import PaliGemmaSpec
from .qwen2_5_vl import Qwen2_5_VLSpec
from .qwen2_vl import Qwen2VLSpec

SPECS: tuple[type[BackboneSpec], ...] = (
    LlavaSpec,
    LlavaNextSpec,
    LlavaOnevisionSpec,
    Blip2Spec,
    InstructBlipSpec,
    Idefics3Spec,
    Qwen2VLSpec,
    Qwen2_5_VLSpec,
    Gemma3Spec,
    PaliGemmaSpec,
)


def supported_model_classes() -> list[str]:
    """Names of the transformers classes LiveEdit can wrap (and subclass of them)."""
    return [name for spec in SPECS for name in spec.model_class_names]


def get_backbone_spec(model: nn.Module, processor: Any | None = None) -> BackboneSpec:
    """The spec of ``model``'s family, found by class hierarchy, then by ``model_type``.

    Args:
        model: the VLLM to wrap.
        processor: its processor (optional; needed to build edit inputs).

    Raises:
        TypeError: no spec fits; the message names the supported classes.
    """
    by_class = {name: spec for spec in SPECS for name in spec.model_class_names}
    for cls in type(model).__mro__:  # most derived first: a subclass's own family wins
        if cls.__name__ in by_class:
            return by_class[cls.__name__](model, processor)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for spec_class in SPECS:
        if model_type in spec_class.model_types:
            spec = spec_class(model, processor)
            try:  # same config, other class: only if the layers are where the family has them
                spec.decoder_layers()
            except AttributeError:
                break
            return spec
    described = type(model).__name__ + (f" (model_type {model_type!r})" if model_type else "")
    raise TypeError(
        f"LiveEdit does not support {described}. Supported classes (and their subclasses): "
        f"{', '.join(supported_model_classes())}. (Cross-attention VLLMs such as Mllama cannot "
        "be routed the LiveEdit way.)"
    )


__all__ = ["SPECS", "BackboneSpec", "get_backbone_spec", "supported_model_classes"]
