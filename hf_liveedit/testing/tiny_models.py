"""Tiny random-weight vision-language models and processors, built offline, for unit tests.

Never use these for quality claims: weights are random (seeded, so deterministic per call). All
families share one tiny byte-level BPE vocabulary (`tiny_tokenizer.py`, 512 tokens) and use a
4-layer decoder of width 64 (4 heads, 2 KV heads) and a 2-layer vision tower of width 32.

Findings about transformers 5.24 for these families (no torchvision installed):

- Image processors: the `*ImageProcessorPil` classes work without torchvision
  (`CLIPImageProcessorPil`, `BlipImageProcessorPil`, `Idefics3ImageProcessorPil`,
  `Qwen2VLImageProcessorPil`); the plain names (`CLIPImageProcessor`, ...) are the torchvision
  backend in 5.x.
- Video processors: `Idefics3Processor` takes none in 5.24. `Qwen2VLProcessor` requires one, and
  even a bare `VideoProcessorMixin()` fails its `__init__` type check because transformers does
  not export `VideoProcessorMixin` without torchvision; `TinyQwen2VLProcessor` relaxes that check.
- `Blip2Processor.__init__` takes no `chat_template`; it is set as an attribute afterwards.
- Configs are dataclasses in 5.x: a custom `PretrainedConfig` declares its fields as annotated
  class attributes, without an `__init__` (see `tiny_vision.py`).
- Image token id: `model.config.image_token_id` on every family (LLaVA and BLIP-2 store
  `image_token_index` and alias it). Image positions are `input_ids == image_token_id`:
  LLaVA: 16 inline where the template puts `<image>` (CLIP: `num_additional_image_tokens=1` on
  the processor with the "default" strategy, which drops CLS; custom tower: "full", 0 extra).
  BLIP-2: `num_query_tokens` (4) that the processor prepends *before* the left padding
  (`[img x4, pad.., <s>, text]`), so the BLIP-2 chat template must not emit `<image>`, and the
  processor has no `image_token_id` attribute (its `image_token` is an `AddedToken`).
  Idefics3: `image_seq_len` (4) tokens as
  `<fake_token_around_image><global-img><image>x4<fake_token_around_image>`; `pixel_values` is
  `[B, images, 3, H, W]` plus `pixel_attention_mask`.
  Qwen2-VL: between `<|vision_start|>` and `<|vision_end|>`; the count depends on the image's
  aspect ratio (square -> 16x16 px -> 4 tokens, 64x48 -> 2); `pixel_values` is flattened patches
  `[total_patches, 96]` plus `image_grid_thw`.
- Qwen2-VL's processor returns `mm_token_type_ids` (1 on image-pad tokens); it drives the M-RoPE
  positions, so pass everything the processor returns. Without it, forward with pixels raises a
  ValueError but generate silently falls back to text-only positions (logits differ slightly).
  Generate builds `[4, B, T]` position ids (text + 3 M-RoPE axes) and caches
  `model.model.rope_deltas` between decoding steps.
- Decoder layers: `model.model.language_model.layers` (LLaVA, Qwen2-VL),
  `model.model.text_model.layers` (Idefics3), `model.language_model.model.decoder.layers`
  (BLIP-2/OPT; BLIP-2 has no `.model`). `model.get_decoder()` has `.layers` except for BLIP-2,
  where it returns the whole `OPTForCausalLM` (then `.get_decoder().layers` or
  `.model.decoder.layers`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.video_processing_utils import VideoProcessorMixin

from hf_liveedit.testing.tiny_tokenizer import TOKEN_IDS, VOCAB_SIZE, tiny_tokenizer
from hf_liveedit.testing.tiny_vision import TinyConvVisionConfig

SEED = 0
IMAGE_SIZE = 32  # pixels of the square images the vision towers see
PATCH_SIZE = 8  # -> 16 patches per image
VISION_HIDDEN = 32
TEXT_HIDDEN = 64
NUM_TEXT_LAYERS = 4

ModelAndProcessor = tuple[PreTrainedModel, ProcessorMixin]
TextModelAndTokenizer = tuple[PreTrainedModel, PreTrainedTokenizerFast]


# Chat template over variables that each family's `_ChatFormat` sets; message content may be a
# string or a list of typed parts. Literals stay in variables so `-` whitespace control never
# trims them.
_CHAT_TEMPLATE_BODY = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ user_prefix }}{%- else -%}{{ assistant_prefix }}"
    "{%- endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ image }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{ user_suffix }}{%- else -%}{{ assistant_suffix }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ assistant_prefix }}{%- endif -%}"
)


@dataclasses.dataclass(frozen=True)
class _ChatFormat:
    """The strings a family's chat template puts around turns and in place of an image."""

    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    image: str

    def template(self) -> str:
        """Renders the Jinja chat template of this format."""
        assignments = "".join(
            "{%- set " + field.name + " = " + json.dumps(getattr(self, field.name)) + " -%}"
            for field in dataclasses.fields(self)
        )
        return assignments + _CHAT_TEMPLATE_BODY


_LLAVA_CHAT = _ChatFormat("USER: ", " ", "ASSISTANT:", "</s>", "<image>\n")
# BLIP-2's processor prepends the query tokens itself, so its template has no image placeholder.
_BLIP2_CHAT = _ChatFormat("Question: ", " ", "Answer:", "\n", "")
_IDEFICS3_CHAT = _ChatFormat(
    "<|im_start|>User:", "<end_of_utterance>\n", "Assistant:", "<end_of_utterance>\n", "<image>"
)
_QWEN2_VL_CHAT = _ChatFormat(
    "<|im_start|>user\n",
    "<|im_end|>\n",
    "<|im_start|>assistant\n",
    "<|im_end|>\n",
    "<|vision_start|><|image_pad|><|vision_end|>",
)


def tiny_image(seed: int) -> Image.Image:
    """Builds a small deterministic random RGB image.

    Args:
        seed: Different seeds give clearly different images.

    Returns:
        A 30x30 RGB `PIL.Image.Image` of uniform random pixels.
    """
    pixels = np.random.default_rng(seed).integers(0, 256, size=(30, 30, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _vit_kwargs() -> dict[str, int]:
    """Config fields shared by the tiny ViT-style vision towers (and BLIP-2's Q-Former sizes)."""
    return {
        "hidden_size": VISION_HIDDEN,
        "intermediate_size": 2 * VISION_HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
    }


def _text_kwargs(eos_token: str = "</s>") -> dict[str, int]:
    """Config fields of the tiny Llama-style decoders, matching the tiny tokenizer's ids."""
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": NUM_TEXT_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,  # grouped-query attention, as in the real checkpoints
        "max_position_embeddings": 256,
        "pad_token_id": TOKEN_IDS["<pad>"],
        "bos_token_id": TOKEN_IDS["<s>"],
        "eos_token_id": TOKEN_IDS[eos_token],
    }


def _build(
    model_class: type[PreTrainedModel], config: PretrainedConfig, tokenizer: PreTrainedTokenizerFast
) -> PreTrainedModel:
    """Builds a model with seeded random weights, in eval mode, generation ids from `tokenizer`.

    The caller's global RNG state is left untouched, so building a model mid-test does not
    change the test's own random draws.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_class(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.float().eval()


def _clip_image_processor() -> CLIPImageProcessorPil:
    """Resizes and center-crops to `IMAGE_SIZE` without torchvision."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def _llava(
    vision_config: PretrainedConfig, strategy: str, feature_layer: int, extra_tokens: int
) -> ModelAndProcessor:
    """Builds a tiny LLaVA around `vision_config` (shared by both LLaVA factories)."""
    tokenizer = tiny_tokenizer()
    num_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=LlamaConfig(**_text_kwargs()),
        image_token_index=TOKEN_IDS["<image>"],
        image_seq_length=num_image_tokens,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=feature_layer,
    )
    model = _build(LlavaForConditionalGeneration, config, tokenizer)
    processor = LlavaProcessor(
        image_processor=_clip_image_processor(),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=extra_tokens,
        chat_template=_LLAVA_CHAT.template(),
    )
    return model, processor


def tiny_llava() -> ModelAndProcessor:
    """Builds a tiny LLaVA: CLIP vision tower (2 layers), Llama text model (4 layers).

    Returns:
        `(LlavaForConditionalGeneration, LlavaProcessor)`; 16 image tokens per image.
    """
    vision_config = CLIPVisionConfig(**_vit_kwargs(), projection_dim=VISION_HIDDEN)
    # The CLS token is dropped by the "default" strategy.
    return _llava(vision_config, strategy="default", feature_layer=-2, extra_tokens=1)


def tiny_llava_custom_vision() -> ModelAndProcessor:
    """Builds a tiny LLaVA whose vision tower is the custom `TinyConvVisionModel`.

    Returns:
        `(LlavaForConditionalGeneration, LlavaProcessor)`; 16 image tokens per image.
    """
    vision_config = TinyConvVisionConfig(
        hidden_size=VISION_HIDDEN, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE
    )
    return _llava(vision_config, strategy="full", feature_layer=-1, extra_tokens=0)


def tiny_blip2() -> ModelAndProcessor:
    """Builds a tiny BLIP-2: ViT (2 layers), Q-Former (2 layers, 4 queries), OPT (4 layers).

    Returns:
        `(Blip2ForConditionalGeneration, Blip2Processor)`; 4 image tokens prefix each prompt.
    """
    num_query_tokens = 4
    tokenizer = tiny_tokenizer()
    vit_kwargs = _vit_kwargs()
    qformer_kwargs = {key: vit_kwargs[key] for key in ("hidden_size", "intermediate_size")}
    config = Blip2Config(
        vision_config=vit_kwargs,
        qformer_config={
            **qformer_kwargs,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "encoder_hidden_size": VISION_HIDDEN,
            "vocab_size": VOCAB_SIZE,
        },
        text_config=OPTConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=TEXT_HIDDEN,
            word_embed_proj_dim=TEXT_HIDDEN,
            ffn_dim=2 * TEXT_HIDDEN,
            num_hidden_layers=NUM_TEXT_LAYERS,
            num_attention_heads=4,
            max_position_embeddings=256,
            pad_token_id=TOKEN_IDS["<pad>"],
            bos_token_id=TOKEN_IDS["<s>"],
            eos_token_id=TOKEN_IDS["</s>"],
        ),
        num_query_tokens=num_query_tokens,
        image_token_index=TOKEN_IDS["<image>"],
    )
    model = _build(Blip2ForConditionalGeneration, config, tokenizer)
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Blip2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_query_tokens=num_query_tokens,
    )
    processor.chat_template = _BLIP2_CHAT.template()  # Blip2Processor takes no chat_template
    return model, processor


def tiny_idefics3() -> ModelAndProcessor:
    """Builds a tiny Idefics3 (SmolVLM family): SigLIP-like ViT (2 layers), Llama (4 layers).

    Image splitting is off, so each image is one 32x32 tile of 4 image tokens (16 patches
    pixel-shuffled by `scale_factor=2`).

    Returns:
        `(Idefics3ForConditionalGeneration, Idefics3Processor)`.
    """
    scale_factor = 2
    image_seq_len = (IMAGE_SIZE // PATCH_SIZE) ** 2 // scale_factor**2
    tokenizer = tiny_tokenizer(eos_token="<end_of_utterance>", add_bos=False)
    config = Idefics3Config(
        vision_config=_vit_kwargs(),
        text_config=LlamaConfig(**_text_kwargs(eos_token="<end_of_utterance>")),
        scale_factor=scale_factor,
        image_token_id=TOKEN_IDS["<image>"],
    )
    model = _build(Idefics3ForConditionalGeneration, config, tokenizer)
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=_IDEFICS3_CHAT.template(),
    )
    return model, processor


class TinyQwen2VLProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` that accepts a bare `VideoProcessorMixin` without torchvision.

    Without torchvision, transformers 5.24 does not export `VideoProcessorMixin`, so the base
    `__init__` type check cannot even look up the expected video-processor class.
    """

    def check_argument_for_proper_class(self, argument_name: str, argument: object) -> type:
        """Accepts any `VideoProcessorMixin` as video processor, defers to the base otherwise."""
        if argument_name == "video_processor" and isinstance(argument, VideoProcessorMixin):
            return VideoProcessorMixin
        return super().check_argument_for_proper_class(argument_name, argument)


def tiny_qwen2_vl() -> ModelAndProcessor:
    """Builds a tiny Qwen2-VL: ViT (2 layers, 4 px patches, 2x2 merge), Qwen2 text (4 layers).

    Images are resized to 16x16 pixels, giving 4 image tokens.

    Returns:
        `(Qwen2VLForConditionalGeneration, TinyQwen2VLProcessor)`.
    """
    patch_size, merge_size, side = 4, 2, 16
    tokenizer = tiny_tokenizer(eos_token="<|im_end|>", add_bos=False)
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": VISION_HIDDEN,
            "hidden_size": TEXT_HIDDEN,
            "num_heads": 2,
            "patch_size": patch_size,
            "spatial_merge_size": merge_size,
            "temporal_patch_size": 2,
        },
        text_config={
            **_text_kwargs(eos_token="<|im_end|>"),
            # head_dim 16: the three M-RoPE sections (time, height, width) cover 16 / 2 dims.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
        },
        image_token_id=TOKEN_IDS["<|image_pad|>"],
        video_token_id=TOKEN_IDS["<|video_pad|>"],
        vision_start_token_id=TOKEN_IDS["<|vision_start|>"],
        vision_end_token_id=TOKEN_IDS["<|vision_end|>"],
    )
    model = _build(Qwen2VLForConditionalGeneration, config, tokenizer)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=2,
        size={"shortest_edge": side * side, "longest_edge": side * side},
    )
    processor = TinyQwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=VideoProcessorMixin(),
        chat_template=_QWEN2_VL_CHAT.template(),
    )
    return model, processor


def tiny_text_model() -> TextModelAndTokenizer:
    """Builds a tiny text-only Llama (an unsupported model, for error-path tests).

    Returns:
        `(LlamaForCausalLM, PreTrainedTokenizerFast)`.
    """
    tokenizer = tiny_tokenizer()
    return _build(LlamaForCausalLM, LlamaConfig(**_text_kwargs()), tokenizer), tokenizer


SUPPORTED_TINY_MODELS: dict[str, Callable[[], ModelAndProcessor]] = {
    "llava": tiny_llava,
    "llava_custom_vision": tiny_llava_custom_vision,
    "blip2": tiny_blip2,
    "idefics3": tiny_idefics3,
    "qwen2_vl": tiny_qwen2_vl,
}
