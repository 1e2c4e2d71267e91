"""PaliGemma (``PaliGemmaForConditionalGeneration``), PaliGemma 2 included."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from torch import nn
from transformers import BatchFeature

from .base import BackboneSpec


class PaliGemmaSpec(BackboneSpec):
    """Image tokens prefix a bidirectional "prefix" (image + BOS + prompt + ``"\\n"``).

    The processor lays out ``"<image>" * N + "<bos>" + prompt + "\\n"`` itself, so the default
    prompt format (PaliGemma processors have no chat template) is ``"<image>{prompt}"``. The
    answer follows the ``"\\n"`` without a space and, as PaliGemma's "suffix", is causal:
    ``token_type_ids`` 1 on answer tokens.
    """

    model_class_names = ("PaliGemmaForConditionalGeneration",)
    model_types = ("paligemma",)
    answer_token_values = {"token_type_ids": 1}

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    @property
    def num_image_tokens(self) -> int:
        seq_length = getattr(self.processor, "image_seq_length", None)
        return seq_length or self.default_image_tokens

    def process(self, images: Sequence[Image.Image] | None, texts: Sequence[str]) -> BatchFeature:
        """The processor's layout; text-only prompts get the same BOS and ``"\\n"`` around them."""
        processor = self.require_processor()
        if images is not None:
            inputs = super().process(images, texts)
            inputs.pop("labels", None)  # the processor's backward-compatible labels: all -100 here
            return inputs
        tokenizer = processor.tokenizer
        return tokenizer(
            [f"{tokenizer.bos_token}{text}\n" for text in texts],
            add_special_tokens=False,
            return_token_type_ids=True,  # the prefix (0) is bidirectional, as with an image
            return_tensors="pt",
            padding=True,
        )

    @staticmethod
    def answer_text(formatted_prompt: str, target: str) -> str:
        """The target as is: every processed prompt ends in ``"\\n"``."""
        return target
