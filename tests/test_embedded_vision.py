"""EfficientNet-Lite vision tower: shapes, checkpoint conversion, and life inside a LLaVA."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, AutoProcessor, LlavaForConditionalGeneration

from hf_liveedit.embedded.tiny import SMALL_STAGES, small_vision_config, tiny_lite_llava
from hf_liveedit.embedded.vision import (
    LITE0_STAGES,
    EfficientNetLiteVisionConfig,
    EfficientNetLiteVisionModel,
    convert_lite0_checkpoint,
)
from hf_liveedit.testing.tiny_models import tiny_image
from hf_liveedit.testing.tiny_tokenizer import TOKEN_IDS


def packaged_style_state_dict(model: EfficientNetLiteVisionModel) -> dict[str, torch.Tensor]:
    """Keys as in the packaged checkpoint (``_blocks.N._expand_conv`` ...), from our shapes."""
    ours = model.state_dict()
    theirs = {}
    for prefix, conv, bn in (("stem", "_conv_stem", "_bn0"), ("head", "_conv_head", "_bn1")):
        theirs[f"{conv}.weight"] = ours[f"{prefix}.conv.weight"]
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            theirs[f"{bn}.{k}"] = ours[f"{prefix}.bn.{k}"]
    for i, block in enumerate(model.blocks):
        parts = [("depthwise", "_depthwise_conv", "_bn1"), ("project", "_project_conv", "_bn2")]
        if block.expand is not None:
            parts.append(("expand", "_expand_conv", "_bn0"))
        for part, conv, bn in parts:
            theirs[f"_blocks.{i}.{conv}.weight"] = ours[f"blocks.{i}.{part}.conv.weight"]
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                theirs[f"_blocks.{i}.{bn}.{k}"] = ours[f"blocks.{i}.{part}.bn.{k}"]
    theirs["_fc.weight"] = torch.zeros(1000, model.config.hidden_size)
    theirs["_fc.bias"] = torch.zeros(1000)
    return theirs


def test_lite0_layout_and_token_grid() -> None:
    model = EfficientNetLiteVisionModel(EfficientNetLiteVisionConfig()).eval()
    assert len(model.blocks) == sum(stage[5] for stage in LITE0_STAGES) == 16
    n_params = sum(p.numel() for p in model.parameters())
    assert 3_300_000 < n_params < 3_600_000  # 4.65M with the 1000-way ImageNet head
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224))
    assert out.last_hidden_state.shape == (2, 49, 1280)
    assert out.hidden_states[-1] is out.last_hidden_state
    assert out.pooler_output.shape == (2, 1280)


def test_tf_same_padding_gives_ceil_sizes() -> None:
    model = EfficientNetLiteVisionModel(small_vision_config()).eval()
    with torch.no_grad():
        for size in (64, 65, 70):
            tokens = model(torch.randn(1, 3, size, size)).last_hidden_state
            side = size
            for _ in range(5):  # stem + four stride-2 stages, each ceil(side / 2) like TF
                side = -(-side // 2)
            assert tokens.shape == (1, side * side, 24)


def test_packaged_checkpoint_converts_exactly() -> None:
    torch.manual_seed(0)
    source = EfficientNetLiteVisionModel(small_vision_config())
    backbone, classifier = convert_lite0_checkpoint(packaged_style_state_dict(source))
    target = EfficientNetLiteVisionModel(small_vision_config())
    target.load_state_dict(backbone, strict=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(source.state_dict().values(), target.state_dict().values())
    )
    assert classifier["weight"].shape == (1000, 24)


def test_registered_with_auto_classes() -> None:
    config = AutoConfig.for_model(
        "efficientnet_lite_vision", hidden_size=24, stages=SMALL_STAGES, stem_channels=8
    )
    assert isinstance(AutoModel.from_config(config), EfficientNetLiteVisionModel)


def ask(model, processor, question: str = "What is shown?") -> torch.Tensor:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=tiny_image(0), text=prompt, return_tensors="pt")
    assert (inputs["input_ids"] == TOKEN_IDS["<image>"]).sum() == 4  # 64x64 -> 2x2 grid
    return model.generate(**inputs, max_new_tokens=4, do_sample=False)


def test_chat_template_places_image_and_default_system_prompt() -> None:
    _, processor = tiny_lite_llava()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
        "Hugging Face<|im_end|>\n<|im_start|>user\n<image>\nWhat is shown?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_llava_generate_and_save_load_round_trip(tmp_path) -> None:
    model, processor = tiny_lite_llava()
    before = ask(model, processor)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded.model.vision_tower, EfficientNetLiteVisionModel)
    assert loaded_processor.image_processor.do_pad
    assert torch.equal(ask(loaded, loaded_processor), before)
