"""LLaVA (``LlavaForConditionalGeneration``), including custom vision towers."""

from __future__ import annotations

from torch import nn

from .base import BackboneSpec


class LlavaSpec(BackboneSpec):
    """Image tokens inline in the text; the language model is ``model.model.language_model``.

    Without a chat template, prompts follow LLaVA-1.5: ``"USER: <image>\\n{prompt} ASSISTANT:"``.
    """

    model_class_names = ("LlavaForConditionalGeneration",)
    model_types = ("llava",)
    prompt_format = "USER: {image}{prompt} ASSISTANT:"
    image_format = "{token}\n"

    def decoder_layers(self) -> nn.ModuleList:
        return self.model.model.language_model.layers

    @property
    def num_image_tokens(self) -> int:
        seq_length = getattr(self.model.config, "image_seq_length", None)
        return seq_length or self.tile_tokens() or self.default_image_tokens

    def tile_tokens(self) -> int | None:
        """Patches in one vision-tower input, ``(image_size // patch_size) ** 2``, if known."""
        vision = self.model.config.vision_config
        size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
        if isinstance(size, int) and isinstance(patch, int) and patch > 0:
            return (size // patch) ** 2
        return None
