"""Qwen2-VL (``Qwen2VLForConditionalGeneration``)."""

from __future__ import annotations

from torch import nn

from .base import BackboneSpec


class Qwen2VLSpec(BackboneSpec):
    """Image tokens between ``<|vision_start|>`` and ``<|vision_end|>``; dynamic resolution.

    Without a chat template, prompts follow the checkpoints' template, default system turn
    included: ``"<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    <|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\\n<|im_start|>assistant\\n"``
    (without the line break after ``user\\n``).
    """

    model_class_names = ("Qwen2VLForConditionalGeneration",)
    model_types = ("qwen2_vl",)
    prompt_format = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{image}{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    image_format = "<|vision_start|>{token}<|vision_end|>"
    row_aligned_inputs = False  # pixel_values holds the batch's patches, flattened

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    def image_block_token_ids(self) -> list[int]:
        config = self.model.config
        return [self.image_token_id, config.vision_start_token_id, config.vision_end_token_id]
