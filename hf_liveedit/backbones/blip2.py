"""BLIP-2 (``Blip2ForConditionalGeneration``) with a decoder-only language model (e.g. OPT)."""

from __future__ import annotations

from torch import nn

from .base import BackboneAdapter


class Blip2Adapter(BackboneAdapter):
    """The processor prefixes ``num_query_tokens`` image tokens; the prompt follows them."""

    model_class_names = ("Blip2ForConditionalGeneration",)

    def decoder_layers(self) -> nn.ModuleList:
        language_model = self.model.language_model
        if self.model.config.use_decoder_only_language_model is False:
            raise TypeError(
                "LiveEdit supports BLIP-2 only with a decoder-only language model (OPT)"
            )
        return language_model.model.decoder.layers

    def step_module(self) -> nn.Module:
        # BLIP-2's generate() calls its language model's generate() with embeddings.
        return self.model.language_model

    @property
    def num_image_tokens(self) -> int:
        return self.model.config.num_query_tokens

    def format_prompt(self, prompt: str, with_image: bool = True) -> str:
        """BLIP-2 processors have no chat template; this is the usual VQA prompt."""
        processor = self.require_processor()
        if getattr(processor, "chat_template", None):
            return super().format_prompt(prompt, with_image)
        return f"Question: {prompt} Answer:"
