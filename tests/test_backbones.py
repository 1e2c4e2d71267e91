"""Backbone adapters: dispatch, default prompt formats without a chat template, input building."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPT, TARGET, TINY_CONFIG, make_liveedit, rig_routing
from torch import nn
from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

from hf_liveedit import LiveEditConfig, get_liveedit_model, supported_model_classes
from hf_liveedit.backbones import SPECS, get_backbone_spec
from hf_liveedit.backbones.llava import LlavaSpec
from hf_liveedit.backbones.llava_next import LlavaNextSpec
from hf_liveedit.testing.tiny_models import (
    SUPPORTED_TINY_MODELS,
    tiny_gemma3,
    tiny_llava,
    tiny_llava_next,
    tiny_paligemma,
)

_LLAVA = ("USER: <image>\n{p} ASSISTANT:", "USER: {p} ASSISTANT:")
_QWEN = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{p}<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "{p}<|im_end|>\n<|im_start|>assistant\n",
)
#: The documented prompt formats without a chat template: (with an image, text-only).
DOCUMENTED_FORMATS = {
    "llava": _LLAVA,
    "llava_custom_vision": _LLAVA,
    "llava_next": _LLAVA,
    "llava_onevision": (
        "<|im_start|>user <image>\n{p}<|im_end|><|im_start|>assistant\n",
        "<|im_start|>user {p}<|im_end|><|im_start|>assistant\n",
    ),
    "blip2": ("Question: {p} Answer:", "Question: {p} Answer:"),
    "instructblip": ("{p}", "{p}"),
    "idefics3": (
        "User:<image>{p}<end_of_utterance>\nAssistant:",
        "User:{p}<end_of_utterance>\nAssistant:",
    ),
    "qwen2_vl": _QWEN,
    "qwen2_5_vl": _QWEN,
    "gemma3": (
        "<start_of_turn>user\n<start_of_image>{p}<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\n{p}<end_of_turn>\n<start_of_turn>model\n",
    ),
    "paligemma": ("<image>{p}", "{p}"),
}


def test_every_adapter_has_a_tiny_model_and_a_documented_format():
    assert set(DOCUMENTED_FORMATS) == set(SUPPORTED_TINY_MODELS)
    covered = {type(get_backbone_spec(*factory())) for factory in SUPPORTED_TINY_MODELS.values()}
    assert covered == set(SPECS)
    assert len(supported_model_classes()) == len(set(supported_model_classes()))


def test_user_subclasses_dispatch_to_their_family_and_fingerprint_as_it(image):
    class MyLlava(LlavaForConditionalGeneration):
        pass

    class MyLlavaNext(LlavaNextForConditionalGeneration):
        pass

    for factory, subclass, adapter_class in (
        (tiny_llava, MyLlava, LlavaSpec),
        (tiny_llava_next, MyLlavaNext, LlavaNextSpec),
    ):
        base, processor = factory()
        model = subclass(base.config).eval()
        liveedit = get_liveedit_model(model, LiveEditConfig(**TINY_CONFIG), processor=processor)
        assert type(liveedit.backbone) is adapter_class  # the most derived family, not LLaVA's
        parent = subclass.__mro__[1].__name__
        assert liveedit.backbone.fingerprint()["architecture"] == parent
        liveedit.add_edit(image, PROMPT, TARGET)
        assert len(liveedit.edits) == 1


def test_other_classes_dispatch_by_model_type_if_the_layout_matches():
    model, processor = tiny_llava()

    class RemoteCodeLlava(nn.Module):  # unrelated class, LLaVA's config and module layout
        def __init__(self, base: LlavaForConditionalGeneration) -> None:
            super().__init__()
            self.config, self.model = base.config, base.model

    adapter = get_backbone_spec(RemoteCodeLlava(model), processor)
    assert type(adapter) is LlavaSpec
    assert adapter.decoder_layers() is model.model.language_model.layers
    assert adapter.fingerprint()["architecture"] == "RemoteCodeLlava"
    # LlavaModel (no LM head) has model_type "llava" but not LLaVA's layout
    with pytest.raises(TypeError, match="LlavaModel \\(model_type 'llava'\\).*Qwen2_5_VL"):
        get_backbone_spec(model.model, processor)


def test_gemma3_checks_its_soft_token_against_the_processor():
    model, processor = tiny_gemma3()
    assert processor.image_token == "<start_of_image>"  # the placeholder, not the model's id
    get_backbone_spec(model, processor)  # its own processor passes
    for other in (tiny_llava()[1], tiny_paligemma()[1]):
        with pytest.raises(ValueError, match="pass the processor that belongs to this model"):
            get_backbone_spec(model, other)


def test_default_prompt_format_without_chat_template(family, image):
    model, processor = SUPPORTED_TINY_MODELS[family]()
    processor.chat_template = None
    liveedit = get_liveedit_model(model, LiveEditConfig(**TINY_CONFIG), processor=processor)
    with_image, text_only = (text.replace("{p}", PROMPT) for text in DOCUMENTED_FORMATS[family])
    assert liveedit.backbone.format_prompt(PROMPT) == with_image
    assert liveedit.backbone.format_prompt(PROMPT, with_image=False) == text_only
    inputs = liveedit.build_inputs(image, PROMPT, targets=TARGET)
    spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    assert spans.image.any() and spans.prompt.any() and spans.answer.any()
    assert liveedit.build_inputs(None, PROMPT, targets=TARGET)["labels"].ne(-100).any()
    liveedit.add_edit(image, PROMPT, TARGET)
    assert len(liveedit.edits) == 1


def test_appended_answers_leave_the_prompt_logits_alone(family, image):
    """Answers are causal for every family (PaliGemma: "suffix" token types; Gemma 3: text)."""
    model, processor = SUPPORTED_TINY_MODELS[family]()
    adapter = get_backbone_spec(model, processor)
    prompt_only = adapter.build_inputs([image], [PROMPT])
    with_answer = adapter.build_inputs([image], [PROMPT], [TARGET])
    length = prompt_only["input_ids"].shape[1]
    assert torch.equal(with_answer["input_ids"][:, :length], prompt_only["input_ids"])
    assert with_answer["labels"][:, length:].ne(-100).all()
    with torch.no_grad():
        expected = model(**prompt_only).logits
        actual = model(**with_answer).logits[:, :length]
    torch.testing.assert_close(actual, expected)


def test_paligemma_layout_matches_its_processor(image):
    model, processor = tiny_paligemma()
    adapter = get_backbone_spec(model, processor)
    text_only = adapter.build_inputs(None, [PROMPT], [TARGET])
    decoded = processor.tokenizer.decode(text_only["input_ids"][0])
    assert decoded == f"<s>{PROMPT}\n{TARGET}"  # no space: the answer follows the "\n"
    assert text_only["token_type_ids"][0].tolist() == (text_only["labels"][0] != -100).tolist()
    with_image = adapter.build_inputs([image], [PROMPT])
    assert "labels" not in with_image  # the processor's all -100 labels are dropped
    assert (
        with_image["input_ids"][0, : adapter.num_image_tokens].eq(model.config.image_token_id).all()
    )


def test_pipeline_with_a_default_formatted_prompt(image):
    """Without a chat template, `pipeline` takes the formatted prompt as text."""
    from transformers import pipeline

    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.processor.chat_template = None
    pipe = pipeline("image-text-to-text", model=liveedit, processor=liveedit.processor)
    text = liveedit.backbone.format_prompt(PROMPT)

    def answer() -> str:
        output = pipe(images=image, text=text, max_new_tokens=4, return_full_text=False)
        return output[0]["generated_text"]

    base_answer = answer()
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(image, PROMPT)
    direct = liveedit.generate(**inputs, max_new_tokens=4, do_sample=False)
    new_tokens = direct[0, inputs["input_ids"].shape[1] :]
    expected = liveedit.processor.decode(new_tokens, skip_special_tokens=True)
    assert answer() == expected != base_answer
