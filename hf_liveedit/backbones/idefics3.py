"""Idefics3 / SmolVLM (``Idefics3ForConditionalGeneration``)."""

from __future__ import annotations

from torch import nn

from .base import BackboneSpec


class Idefics3Spec(BackboneSpec):
    """Image tokens per tile, wrapped in ``<fake_token_around_image>`` and tile tags.

    Without a chat template, prompts follow Idefics3's template (the tokenizer adds the BOS):
    ``"User:<image>{prompt}<end_of_utterance>\\nAssistant:"``.
    """

    model_class_names = ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration")
    model_types = ("idefics3", "smolvlm")
    prompt_format = "User:{image}{prompt}<end_of_utterance>\nAssistant:"

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.text_model.layers

    def image_block_token_ids(self) -> list[int]:
        ids = [self.image_token_id]
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            wrapper = tokenizer.convert_tokens_to_ids("<fake_token_around_image>")
            if wrapper is not None and wrapper != tokenizer.unk_token_id:
                ids.append(wrapper)
        return ids

    @property
    def num_image_tokens(self) -> int:
        seq_len = getattr(self.processor, "image_seq_len", None)
        return seq_len or self.default_image_tokens
