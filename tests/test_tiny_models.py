"""Checks that the tiny offline VLLM factories give working model/processor pairs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, LlamaForCausalLM, LlavaForConditionalGeneration

from hf_liveedit.testing.tiny_models import (
    SUPPORTED_TINY_MODELS,
    ModelAndProcessor,
    tiny_image,
    tiny_llava_custom_vision,
    tiny_text_model,
)
from hf_liveedit.testing.tiny_vision import TinyConvVisionConfig, TinyConvVisionModel

PROMPTS = ("What is the capital?", "What is the capital of the country with this flag?")


def _prompt(processor: object, text: str) -> str:
    """Renders a one-turn image + text chat ready for generation (PaliGemma: no chat template)."""
    if processor.chat_template is None:
        return f"{processor.image_token}{text}"
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
    return processor.apply_chat_template([message], add_generation_prompt=True, tokenize=False)


def _inputs(processor: object, count: int) -> dict[str, torch.Tensor]:
    """Processes `count` different images with prompts of different lengths."""
    texts = [_prompt(processor, text) for text in PROMPTS[:count]]
    images = [[tiny_image(seed)] for seed in range(count)]  # one list per text (Gemma 3 needs it)
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt")
    inputs.pop("labels", None)  # PaliGemma's processor adds all -100 labels
    return inputs


@pytest.fixture(scope="module", params=sorted(SUPPORTED_TINY_MODELS))
def family(request: pytest.FixtureRequest) -> tuple[str, ModelAndProcessor]:
    return request.param, SUPPORTED_TINY_MODELS[request.param]()


def test_model_and_tokenizer_agree(family: tuple[str, ModelAndProcessor]) -> None:
    _, (model, processor) = family
    tokenizer = processor.tokenizer
    assert not model.training and model.dtype == torch.float32
    assert len(tokenizer) == model.config.get_text_config().vocab_size
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    assert tokenizer("", add_special_tokens=False).input_ids == []
    assert model.config.get_text_config().num_hidden_layers >= 3


def test_chat_template_puts_image_before_text(family: tuple[str, ModelAndProcessor]) -> None:
    name, (_, processor) = family
    if name == "paligemma":  # no chat template: the processor lays out image, BOS, prompt, "\n"
        assert processor.chat_template is None
        return
    prompt = _prompt(processor, PROMPTS[0])
    assert PROMPTS[0] in prompt and not prompt.endswith(PROMPTS[0])
    if name not in ("blip2", "instructblip"):  # their processors prepend the image tokens
        assert prompt.index(str(processor.image_token)) < prompt.index(PROMPTS[0])


def test_forward_has_image_tokens_and_logits(family: tuple[str, ModelAndProcessor]) -> None:
    _, (model, processor) = family
    inputs = _inputs(processor, 1)
    assert (inputs["input_ids"] == model.config.image_token_id).any()
    with torch.no_grad():
        logits = model(**inputs).logits
    vocab_size = model.config.get_text_config().vocab_size
    assert logits.shape == (*inputs["input_ids"].shape, vocab_size)
    assert torch.isfinite(logits).all()


def test_batched_greedy_generate(family: tuple[str, ModelAndProcessor]) -> None:
    _, (model, processor) = family
    inputs = _inputs(processor, 2)
    prompt_length = inputs["input_ids"].shape[1]
    assert (inputs["attention_mask"] == 0).any()  # prompts of different lengths were padded
    with torch.no_grad():
        last_logits = model(**inputs).logits[:, -1]
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert not torch.allclose(last_logits[0], last_logits[1])
    assert output.shape[0] == 2 and prompt_length < output.shape[1] <= prompt_length + 3
    assert torch.equal(output[:, :prompt_length], inputs["input_ids"])


@pytest.mark.parametrize("name", sorted(SUPPORTED_TINY_MODELS))
def test_factories_are_deterministic(name: str) -> None:
    logits = []
    for _ in range(2):
        model, processor = SUPPORTED_TINY_MODELS[name]()
        with torch.no_grad():
            logits.append(model(**_inputs(processor, 1)).logits)
    assert torch.equal(logits[0], logits[1])


def test_factories_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_text_model()
    assert torch.equal(torch.rand(3), expected)


def test_tiny_image_is_deterministic_and_seed_dependent() -> None:
    assert tiny_image(0).tobytes() == tiny_image(0).tobytes()
    assert tiny_image(0).tobytes() != tiny_image(1).tobytes()
    assert tiny_image(0).mode == "RGB"


def test_custom_vision_tower_round_trips(tmp_path: object) -> None:
    model, processor = tiny_llava_custom_vision()
    assert isinstance(model.model.vision_tower, TinyConvVisionModel)
    assert isinstance(AutoConfig.for_model(TinyConvVisionConfig.model_type), TinyConvVisionConfig)
    inputs = _inputs(processor, 1)
    model.save_pretrained(tmp_path)
    reloaded = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_tiny_text_model_runs() -> None:
    model, tokenizer = tiny_text_model()
    assert isinstance(model, LlamaForCausalLM)
    inputs = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(tokenizer))
