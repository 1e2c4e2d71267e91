"""A tiny random EfficientNet-Lite LLaVA with the default backbone's processor and template.

For offline tests of code that handles the default backbone (same classes, chat template and
image processor; random weights, a narrow vision tower and a 2-layer Llama).
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from hf_liveedit.testing.tiny_tokenizer import TOKEN_IDS, VOCAB_SIZE, tiny_tokenizer

from .language import CHAT_TEMPLATE
from .vision import EfficientNetLiteVisionConfig, make_image_processor

# Narrow stages with Lite0's total stride 32: a 64x64 image gives 2x2 = 4 image tokens.
SMALL_STAGES = [[3, 2, 1, 8, 8, 1], [5, 2, 2, 8, 8, 2], [3, 2, 2, 8, 16, 1], [3, 2, 2, 16, 16, 1]]


def small_vision_config() -> EfficientNetLiteVisionConfig:
    """A narrow EfficientNet-Lite config (24-d features)."""
    return EfficientNetLiteVisionConfig(stem_channels=8, stages=SMALL_STAGES, hidden_size=24)


def tiny_lite_llava() -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """EfficientNet-Lite (narrow) + tiny Llama LLaVA with the real chat template and processor.

    Returns:
        ``(model in eval mode, processor)``; 64x64 images, 4 image tokens.
    """
    tokenizer = tiny_tokenizer()
    config = LlavaConfig(
        vision_config=small_vision_config(),
        text_config=LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=TOKEN_IDS["<pad>"],
            eos_token_id=TOKEN_IDS["</s>"],
        ),
        image_token_id=TOKEN_IDS["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_seq_length=4,
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights, caller's RNG untouched
        torch.manual_seed(0)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = LlavaProcessor(
        image_processor=make_image_processor(64),
        tokenizer=tokenizer,
        patch_size=32,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
