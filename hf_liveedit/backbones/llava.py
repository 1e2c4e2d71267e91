"""LLaVA (``LlavaForConditionalGeneration``), including custom vision towers."""

from __future__ import annotations

from torch import nn

from .base import BackboneAdapter


class LlavaAdapter(BackboneAdapter):
    """Image tokens inline in the text; the language model is ``model.model.language_model``."""

    model_class_names = ("LlavaForConditionalGeneration",)

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    @property
    def num_image_tokens(self) -> int:
        return getattr(self.model.config, "image_seq_length", None) or self.default_image_tokens
