"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``): LLaVA with "anyres" image tiling."""

from __future__ import annotations

from .llava import LlavaSpec


class LlavaNextSpec(LlavaSpec):
    """Like LLaVA, but an image's token count depends on its size (overview + tiles + newlines).

    Spans come from ``input_ids``, so the varying count needs nothing; the default sentinel has
    one tile's features (576 for a 336 px CLIP with 14 px patches), since ``image_seq_length`` is
    not the per-image count here. Without a chat template, prompts follow LLaVA-1.5 (the Vicuna
    checkpoints' format; the Mistral and Llama 3 ones ship chat templates).
    """

    model_class_names = ("LlavaNextForConditionalGeneration",)
    model_types = ("llava_next",)

    @property
    def num_image_tokens(self) -> int:
        return self.tile_tokens() or self.default_image_tokens
