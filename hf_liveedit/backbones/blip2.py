"""BLIP-2 (``Blip2ForConditionalGeneration``) with a decoder-only language model (e.g. OPT)."""

from __future__ import annotations

from torch import nn

from .base import BackboneSpec


class Blip2Spec(BackboneSpec):
    """The processor prefixes ``num_query_tokens`` image tokens; the prompt follows them.

    BLIP-2 processors have no chat template; prompts default to the usual VQA format,
    ``"Question: {prompt} Answer:"`` (no image placeholder: the processor adds the image block).
    """

    model_class_names = ("Blip2ForConditionalGeneration",)
    model_types = ("blip-2",)
    prompt_format = "Question: {prompt} Answer:"
    image_format = ""

    def decoder_layers(self) -> nn.ModuleList:
        if self.model.config.use_decoder_only_language_model is False:
            raise TypeError(
                f"LiveEdit supports {type(self.model).__name__} only with a decoder-only language "
                "model (e.g. OPT, Llama/Vicuna), not an encoder-decoder (Flan-T5)"
            )
        # OPT's get_decoder() is its OPTDecoder, Llama's its LlamaModel: both hold `.layers`.
        return self.model.language_model.get_decoder().layers

    def step_module(self) -> nn.Module:
        # generate() calls the language model's generate() with embeddings.
        return self.model.language_model

    @property
    def num_image_tokens(self) -> int:
        return self.model.config.num_query_tokens
