"""Tiny random-weight vision-language models and processors, built offline, for unit tests.

Never use these for quality claims: weights are random (seeded, so deterministic per call). All
families share one tiny byte-level BPE vocabulary (`tiny_tokenizer.py`, 512 tokens, plus a few
appended special tokens for Gemma 3, LLaVA-OneVision and PaliGemma) and use a 4-layer decoder of
width 64 (4 heads, 2 KV heads) and a 2-layer vision tower of width 32.

Findings about transformers 5.24 for these families (no torchvision installed):

- Image processors: the `*ImageProcessorPil` classes work without torchvision
  (`CLIPImageProcessorPil`, `BlipImageProcessorPil`, `Idefics3ImageProcessorPil`,
  `Qwen2VLImageProcessorPil`, `LlavaNextImageProcessorPil`, `LlavaOnevisionImageProcessorPil`,
  `Gemma3ImageProcessorPil`, `SiglipImageProcessorPil`); the plain names (`CLIPImageProcessor`, ...) are the torchvision
  backend in 5.x.
- Video processors: `Idefics3Processor` takes none in 5.24. `Qwen2VLProcessor` requires one, and
  even a bare `VideoProcessorMixin()` fails its `__init__` type check because transformers does
  not export `VideoProcessorMixin` without torchvision; `_AcceptsBareVideoProcessor` relaxes that
  check (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision).
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
- LLaVA-NeXT / OneVision: every "anyres" feature (overview, tiles, row-end newlines) is an
  `<image>` token; the count depends on the image's size (36 for a 30x30 image here). OneVision's
  processor needs a video processor (same workaround as Qwen2-VL) and a `<video>` token.
- Qwen2.5-VL: as Qwen2-VL (processor, `mm_token_type_ids`, M-RoPE); its ViT has window attention
  (`window_size` in pixels) with full attention in `fullatt_block_indexes`.
- InstructBLIP: BLIP-2's layout; the processor also returns `qformer_input_ids` (padded on the
  language model's side, left here, although the BERT-style Q-Former has absolute positions).
  `InstructBlipProcessor.__init__` takes no `chat_template`.
- Gemma 3: `processor.image_token` is `<start_of_image>` (the placeholder, expanded with
  `"\n\n"` around it into soft tokens); the model's image id is `<image_soft_token>`'s. It
  needs the tokenizer's named `boi_token` / `eoi_token` / `image_token`, and one image list per
  text (a flat image list is read as all of the first text's images). `token_type_ids` (1 on
  soft tokens) make the image block bidirectional.
- PaliGemma: no chat template; the processor lays out `<image>*N + bos + text + "\n"`, adds 1152
  `<locXXXX>`/`<segXXX>` tokens to the tokenizer, returns `token_type_ids` (0: bidirectional
  prefix, 1: causal suffix) and always all -100 `labels` without `suffix`. Its image processor
  must carry `image_seq_length`.
- Decoder layers: `model.model.language_model.layers` (LLaVA, LLaVA-NeXT, LLaVA-OneVision,
  Qwen2-VL, Qwen2.5-VL, Gemma 3, PaliGemma), `model.model.text_model.layers` (Idefics3),
  `model.language_model.model.decoder.layers` (BLIP-2/OPT; BLIP-2 and InstructBLIP have no
  `.model`; InstructBLIP/Llama: `model.language_model.model.layers`). `model.get_decoder()` has `.layers` except for BLIP-2,
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
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    OPTConfig,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    SiglipVisionConfig,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.video_processing_utils import VideoProcessorMixin

from hf_liveedit.testing.tiny_tokenizer import TOKEN_IDS, VOCAB_SIZE, tiny_tokenizer
from hf_liveedit.testing.tiny_vision import TinyConvVisionConfig

SEED = 0
IMAGE_SIZE = 32  # pixels of the square images the vision towers see
PATCH_SIZE = 8  # -> 16 patches per image
VISION_HIDDEN = 32
TEXT_HIDDEN = 64
NUM_TEXT_LAYERS = 4

_NUM_QUERY_TOKENS = 4  # BLIP-2 / InstructBLIP image tokens
_QWEN_PATCH, _QWEN_MERGE = 4, 2  # Qwen-VL ViT patch pixels and token-merge factor
# LLaVA-NeXT / OneVision "anyres" resolutions: one tile, or two side by side.
_GRID_PINPOINTS = [
    [IMAGE_SIZE, IMAGE_SIZE],
    [IMAGE_SIZE, 2 * IMAGE_SIZE],
    [2 * IMAGE_SIZE, IMAGE_SIZE],
]

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
_ONEVISION_CHAT = _ChatFormat(
    "<|im_start|>user ", "<|im_end|>", "<|im_start|>assistant\n", "<|im_end|>", "<image>\n"
)
_GEMMA3_CHAT = _ChatFormat(
    "<start_of_turn>user\n",
    "<end_of_turn>\n",
    "<start_of_turn>model\n",
    "<end_of_turn>\n",
    "<start_of_image>",
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


def _text_kwargs(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Config fields of the tiny Llama-style decoders, matching `tokenizer`'s vocabulary and ids."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": NUM_TEXT_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,  # grouped-query attention, as in the real checkpoints
        "max_position_embeddings": 256,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
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


def _blip_image_processor() -> BlipImageProcessorPil:
    """Resizes to `IMAGE_SIZE` squares without torchvision (BLIP-2 and InstructBLIP)."""
    return BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def _clip_image_processor() -> CLIPImageProcessorPil:
    """Resizes and center-crops to `IMAGE_SIZE` without torchvision."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def _llava(
    vision_config: PretrainedConfig,
    strategy: str,
    feature_layer: int,
    extra_tokens: int,
    anyres: bool = False,
) -> ModelAndProcessor:
    """Builds a tiny LLaVA (or, with `anyres`, LLaVA-NeXT) around `vision_config`."""
    tokenizer = tiny_tokenizer()
    fields = {
        "vision_config": vision_config,
        "text_config": LlamaConfig(**_text_kwargs(tokenizer)),
        "image_token_index": TOKEN_IDS["<image>"],
        "image_seq_length": (IMAGE_SIZE // PATCH_SIZE) ** 2,
        "vision_feature_select_strategy": strategy,
        "vision_feature_layer": feature_layer,
    }
    processor_fields = {
        "tokenizer": tokenizer,
        "patch_size": PATCH_SIZE,
        "vision_feature_select_strategy": strategy,
        "num_additional_image_tokens": extra_tokens,
        "chat_template": _LLAVA_CHAT.template(),
    }
    if not anyres:
        model = _build(LlavaForConditionalGeneration, LlavaConfig(**fields), tokenizer)
        return model, LlavaProcessor(image_processor=_clip_image_processor(), **processor_fields)
    config = LlavaNextConfig(**fields, image_grid_pinpoints=_GRID_PINPOINTS)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=_GRID_PINPOINTS,
    )
    model = _build(LlavaNextForConditionalGeneration, config, tokenizer)
    return model, LlavaNextProcessor(image_processor=image_processor, **processor_fields)


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


def tiny_llava_next() -> ModelAndProcessor:
    """Builds a tiny LLaVA-NeXT: CLIP vision tower (2 layers), Llama text model (4 layers).

    "anyres" with grid pinpoints of one or two 32 px tiles: a 30x30 image becomes the overview
    plus one tile, 16 + 16 features and 4 row-end newline features, all `<image>` tokens (36).

    Returns:
        `(LlavaNextForConditionalGeneration, LlavaNextProcessor)`.
    """
    vision_config = CLIPVisionConfig(**_vit_kwargs(), projection_dim=VISION_HIDDEN)
    return _llava(vision_config, strategy="default", feature_layer=-2, extra_tokens=1, anyres=True)


def tiny_llava_onevision() -> ModelAndProcessor:
    """Builds a tiny LLaVA-OneVision: SigLIP vision tower (2 layers), Qwen2 text model (4 layers).

    Same anyres layout as `tiny_llava_next` (SigLIP has no CLS token: the "full" strategy).

    Returns:
        `(LlavaOnevisionForConditionalGeneration, TinyLlavaOnevisionProcessor)`.
    """
    tokenizer = tiny_tokenizer(eos_token="<|im_end|>", add_bos=False, extra_tokens=("<video>",))
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**_vit_kwargs()),
        text_config=Qwen2Config(**_text_kwargs(tokenizer)),
        image_token_index=TOKEN_IDS["<image>"],
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=_GRID_PINPOINTS,
    )
    model = _build(LlavaOnevisionForConditionalGeneration, config, tokenizer)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_grid_pinpoints=_GRID_PINPOINTS
    )
    processor = TinyLlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=VideoProcessorMixin(),
        num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=_ONEVISION_CHAT.template(),
    )
    return model, processor


def _qformer_config() -> dict[str, int]:
    """The tiny Q-Former of BLIP-2 and InstructBLIP (2 layers over the tiny ViT's features)."""
    vit_kwargs = _vit_kwargs()
    return {
        "hidden_size": vit_kwargs["hidden_size"],
        "intermediate_size": vit_kwargs["intermediate_size"],
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "encoder_hidden_size": VISION_HIDDEN,
        "vocab_size": VOCAB_SIZE,
    }


def tiny_blip2() -> ModelAndProcessor:
    """Builds a tiny BLIP-2: ViT (2 layers), Q-Former (2 layers, 4 queries), OPT (4 layers).

    Returns:
        `(Blip2ForConditionalGeneration, Blip2Processor)`; 4 image tokens prefix each prompt.
    """
    tokenizer = tiny_tokenizer()
    config = Blip2Config(
        vision_config=_vit_kwargs(),
        qformer_config=_qformer_config(),
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
        num_query_tokens=_NUM_QUERY_TOKENS,
        image_token_index=TOKEN_IDS["<image>"],
    )
    model = _build(Blip2ForConditionalGeneration, config, tokenizer)
    processor = Blip2Processor(
        image_processor=_blip_image_processor(),
        tokenizer=tokenizer,
        num_query_tokens=_NUM_QUERY_TOKENS,
    )
    processor.chat_template = _BLIP2_CHAT.template()  # Blip2Processor takes no chat_template
    return model, processor


def tiny_instructblip() -> ModelAndProcessor:
    """Builds a tiny InstructBLIP: ViT, instruction-aware Q-Former (4 queries), Llama (4 layers).

    The Q-Former reads the prompt too, tokenized by its own tokenizer (`qformer_input_ids`).

    Returns:
        `(InstructBlipForConditionalGeneration, InstructBlipProcessor)`; 4 image tokens prefix
        each prompt, as in BLIP-2.
    """
    tokenizer = tiny_tokenizer()
    config = InstructBlipConfig(
        vision_config=_vit_kwargs(),
        qformer_config=_qformer_config(),
        text_config=LlamaConfig(**_text_kwargs(tokenizer)).to_dict(),
        num_query_tokens=_NUM_QUERY_TOKENS,
        image_token_index=TOKEN_IDS["<image>"],
    )
    model = _build(InstructBlipForConditionalGeneration, config, tokenizer)
    processor = InstructBlipProcessor(
        image_processor=_blip_image_processor(),
        tokenizer=tokenizer,
        qformer_tokenizer=tiny_tokenizer(),
        num_query_tokens=_NUM_QUERY_TOKENS,
    )
    processor.chat_template = _BLIP2_CHAT.template()  # like Blip2Processor, no chat_template arg
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
        text_config=LlamaConfig(**_text_kwargs(tokenizer)),
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


class _AcceptsBareVideoProcessor(ProcessorMixin):
    """Processor mixin that accepts a bare `VideoProcessorMixin` as video processor.

    Without torchvision, transformers 5.24 does not export `VideoProcessorMixin`, so the base
    `__init__` type check cannot even look up the expected video-processor class.
    """

    def check_argument_for_proper_class(self, argument_name: str, argument: object) -> type:
        """Accepts any `VideoProcessorMixin` as video processor, defers to the base otherwise."""
        if argument_name == "video_processor" and isinstance(argument, VideoProcessorMixin):
            return VideoProcessorMixin
        return super().check_argument_for_proper_class(argument_name, argument)


class TinyQwen2VLProcessor(_AcceptsBareVideoProcessor, Qwen2VLProcessor):
    """`Qwen2VLProcessor` built without torchvision (see `_AcceptsBareVideoProcessor`)."""


class TinyQwen2_5_VLProcessor(_AcceptsBareVideoProcessor, Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` built without torchvision (see `_AcceptsBareVideoProcessor`)."""


class TinyLlavaOnevisionProcessor(_AcceptsBareVideoProcessor, LlavaOnevisionProcessor):
    """`LlavaOnevisionProcessor` built without torchvision (see `_AcceptsBareVideoProcessor`)."""


def _qwen_vl(
    model_class: type[PreTrainedModel],
    config_class: type[PretrainedConfig],
    processor_class: type[ProcessorMixin],
    vision_config: dict[str, object],
) -> ModelAndProcessor:
    """Builds a tiny Qwen-VL of either generation around `vision_config` (4 px patches, 2x2 merge).

    Images are resized to 16x16 pixels, giving 4 image tokens.
    """
    side = 16
    tokenizer = tiny_tokenizer(eos_token="<|im_end|>", add_bos=False)
    config = config_class(
        vision_config={
            **vision_config,
            "depth": 2,
            "num_heads": 2,
            "patch_size": _QWEN_PATCH,
            "spatial_merge_size": _QWEN_MERGE,
            "temporal_patch_size": 2,
        },
        text_config={
            **_text_kwargs(tokenizer),
            # head_dim 16: the three M-RoPE sections (time, height, width) cover 16 / 2 dims.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
        },
        image_token_id=TOKEN_IDS["<|image_pad|>"],
        video_token_id=TOKEN_IDS["<|video_pad|>"],
        vision_start_token_id=TOKEN_IDS["<|vision_start|>"],
        vision_end_token_id=TOKEN_IDS["<|vision_end|>"],
    )
    model = _build(model_class, config, tokenizer)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=_QWEN_PATCH,
        merge_size=_QWEN_MERGE,
        temporal_patch_size=2,
        size={"shortest_edge": side * side, "longest_edge": side * side},
    )
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=VideoProcessorMixin(),
        chat_template=_QWEN2_VL_CHAT.template(),
    )
    return model, processor


def tiny_qwen2_vl() -> ModelAndProcessor:
    """Builds a tiny Qwen2-VL: ViT (2 layers), Qwen2 text (4 layers); 4 tokens per image.

    Returns:
        `(Qwen2VLForConditionalGeneration, TinyQwen2VLProcessor)`.
    """
    vision_config = {"embed_dim": VISION_HIDDEN, "hidden_size": TEXT_HIDDEN}
    return _qwen_vl(
        Qwen2VLForConditionalGeneration, Qwen2VLConfig, TinyQwen2VLProcessor, vision_config
    )


def tiny_qwen2_5_vl() -> ModelAndProcessor:
    """Builds a tiny Qwen2.5-VL: window-attention ViT (2 layers), Qwen2 text (4 layers).

    The 8 px window is one merged token, so block 0 attends within windows and block 1 (a full
    attention block) across the image. 4 tokens per image.

    Returns:
        `(Qwen2_5_VLForConditionalGeneration, TinyQwen2_5_VLProcessor)`.
    """
    vision_config = {
        "hidden_size": VISION_HIDDEN,
        "intermediate_size": 2 * VISION_HIDDEN,
        "out_hidden_size": TEXT_HIDDEN,
        "window_size": _QWEN_PATCH * _QWEN_MERGE,
        "fullatt_block_indexes": [1],
    }
    return _qwen_vl(
        Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig, TinyQwen2_5_VLProcessor, vision_config
    )


def tiny_gemma3() -> ModelAndProcessor:
    """Builds a tiny Gemma 3: SigLIP (2 layers), Gemma 3 text model (4 layers, sliding + global).

    The projector average-pools the 4x4 patch grid to `mm_tokens_per_image` = 4 soft tokens; the
    processor expands `<start_of_image>` into
    `"\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\n"`. The sliding
    window (128) is longer than any test sequence, so batched and single runs agree.

    Returns:
        `(Gemma3ForConditionalGeneration, Gemma3Processor)`.
    """
    tokens_per_image = 4
    tokenizer = tiny_tokenizer(
        eos_token="<end_of_turn>",
        extra_tokens=("<start_of_turn>", "<end_of_turn>"),
        named_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    text_config = Gemma3TextConfig(
        **_text_kwargs(tokenizer),
        head_dim=TEXT_HIDDEN // 4,
        query_pre_attn_scalar=TEXT_HIDDEN // 4,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"] * (NUM_TEXT_LAYERS // 2),
    )
    config = Gemma3Config(
        vision_config=SiglipVisionConfig(**_vit_kwargs()).to_dict(),
        text_config=text_config.to_dict(),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    model = _build(Gemma3ForConditionalGeneration, config, tokenizer)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=_GEMMA3_CHAT.template(),
    )
    return model, processor


def tiny_paligemma() -> ModelAndProcessor:
    """Builds a tiny PaliGemma: SigLIP (2 layers), Gemma text model (4 layers), no chat template.

    The processor lays out `"<image>" * 16 + "<s>" + prompt + "\n"` (a bidirectional prefix,
    `token_type_ids` 0) and adds PaliGemma's 1152 location/segmentation tokens to the tokenizer,
    so the vocabulary is `len(tokenizer)` (1664), not 512.

    Returns:
        `(PaliGemmaForConditionalGeneration, PaliGemmaProcessor)`.
    """
    tokenizer = tiny_tokenizer(named_tokens={"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = (IMAGE_SIZE // PATCH_SIZE) ** 2  # read by the processor
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**_vit_kwargs()).to_dict(),
        text_config=GemmaConfig(**_text_kwargs(tokenizer), head_dim=TEXT_HIDDEN // 4).to_dict(),
        image_token_index=TOKEN_IDS["<image>"],
        projection_dim=TEXT_HIDDEN,
        hidden_size=TEXT_HIDDEN,
    )
    return _build(PaliGemmaForConditionalGeneration, config, tokenizer), processor


def tiny_text_model() -> TextModelAndTokenizer:
    """Builds a tiny text-only Llama (an unsupported model, for error-path tests).

    Returns:
        `(LlamaForCausalLM, PreTrainedTokenizerFast)`.
    """
    tokenizer = tiny_tokenizer()
    return _build(LlamaForCausalLM, LlamaConfig(**_text_kwargs(tokenizer)), tokenizer), tokenizer


SUPPORTED_TINY_MODELS: dict[str, Callable[[], ModelAndProcessor]] = {
    "llava": tiny_llava,
    "llava_custom_vision": tiny_llava_custom_vision,
    "llava_next": tiny_llava_next,
    "llava_onevision": tiny_llava_onevision,
    "blip2": tiny_blip2,
    "instructblip": tiny_instructblip,
    "idefics3": tiny_idefics3,
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "gemma3": tiny_gemma3,
    "paligemma": tiny_paligemma,
}
