"""Gemma 3 (``Gemma3ForConditionalGeneration``), the image-text models (4B and up)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import BackboneSpec


class Gemma3Spec(BackboneSpec):
    """``mm_tokens_per_image`` soft tokens between ``<start_of_image>`` and ``<end_of_image>``.

    The processor's ``image_token`` is ``<start_of_image>``, the placeholder it expands into
    ``"\\n\\n<start_of_image>" + "<image_soft_token>" * N + "<end_of_image>\\n\\n"``; the model's
    ``image_token_id`` is the soft token's. Without a chat template, prompts follow the
    checkpoints' template (the tokenizer adds the BOS):
    ``"<start_of_turn>user\\n<start_of_image>{prompt}<end_of_turn>\\n<start_of_turn>model\\n"``.
    """

    model_class_names = ("Gemma3ForConditionalGeneration",)
    model_types = ("gemma3",)
    prompt_format = "<start_of_turn>user\n{image}{prompt}<end_of_turn>\n<start_of_turn>model\n"

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    def processor_image_token(self) -> Any:
        # The placeholder (`processor.image_token`) is <start_of_image>; the tokenizer names the
        # soft token. Another family's processor has no such tokenizer: check its placeholder.
        tokenizer = getattr(self.processor, "tokenizer", None)
        return getattr(tokenizer, "image_token", None) or super().processor_image_token()

    def image_block_token_ids(self) -> list[int]:
        config = self.model.config
        return [self.image_token_id, config.boi_token_id, config.eoi_token_id]

    @property
    def num_image_tokens(self) -> int:
        return self.model.config.mm_tokens_per_image
