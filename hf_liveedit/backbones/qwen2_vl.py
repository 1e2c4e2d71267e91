"""Qwen2-VL (``Qwen2VLForConditionalGeneration``)."""

from __future__ import annotations

from torch import nn

from .base import BackboneAdapter


class Qwen2VLAdapter(BackboneAdapter):
    """Image tokens between ``<|vision_start|>`` and ``<|vision_end|>``; dynamic resolution."""

    model_class_names = ("Qwen2VLForConditionalGeneration",)

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    def image_block_token_ids(self) -> list[int]:
        config = self.model.config
        return [self.image_token_id, config.vision_start_token_id, config.vision_end_token_id]
