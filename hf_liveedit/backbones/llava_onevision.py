"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): anyres LLaVA on Qwen2."""

from __future__ import annotations

from .llava_next import LlavaNextSpec


class LlavaOnevisionSpec(LlavaNextSpec):
    """Anyres image tokens inline, as LLaVA-NeXT; Qwen2's turn markers.

    Without a chat template, prompts follow the checkpoints' template:
    ``"<|im_start|>user <image>\\n{prompt}<|im_end|><|im_start|>assistant\\n"``.
    """

    model_class_names = ("LlavaOnevisionForConditionalGeneration",)
    model_types = ("llava_onevision",)
    prompt_format = "<|im_start|>user {image}{prompt}<|im_end|><|im_start|>assistant\n"
