"""LiveEditModel behaviour on every supported tiny backbone family."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit import LiveEditConfig, __version__, get_liveedit_model, supported_model_classes
from hf_liveedit.testing.tiny_models import tiny_image, tiny_text_model


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def greedy(model, inputs, steps: int = 3) -> torch.Tensor:
    return model.generate(**inputs, max_new_tokens=steps, do_sample=False)


def test_no_edits_and_disabled_adapter_equal_base(family, image, other_image):
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    inputs = liveedit.build_inputs([image, other_image], [PROMPT, "Name it."])
    base_logits = logits(liveedit.base_model, inputs)
    base_tokens = greedy(liveedit.base_model, inputs)
    assert torch.equal(logits(liveedit, inputs), base_logits)
    assert torch.equal(greedy(liveedit, inputs), base_tokens)

    liveedit.add_edit(image, PROMPT, TARGET)
    assert not torch.equal(logits(liveedit, inputs), base_logits)
    with liveedit.disable_adapter():
        assert torch.equal(logits(liveedit, inputs), base_logits)
        assert torch.equal(greedy(liveedit, inputs), base_tokens)


def test_edit_applies_when_kept_and_removal_restores_base(family, image):
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    inputs = liveedit.build_inputs(image, PROMPT)
    base_logits = logits(liveedit, inputs)
    edit_id = liveedit.add_edit(image, PROMPT, TARGET)
    with liveedit.record_routing() as routing:
        edited = logits(liveedit, inputs)
    assert routing[-1][0, 0] > 0
    assert (edited - base_logits).abs().max() > 1e-3
    liveedit.remove_edit(edit_id)
    assert len(liveedit.edits) == 0
    assert torch.equal(logits(liveedit, inputs), base_logits)


def test_input_below_the_sentinel_is_unchanged(family, image):
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=False)
    inputs = liveedit.build_inputs(image, PROMPT)
    base_logits = logits(liveedit, inputs)
    liveedit.add_edit(image, PROMPT, TARGET)
    with liveedit.record_routing() as routing:
        assert torch.equal(logits(liveedit, inputs), base_logits)
    assert torch.equal(routing[-1], torch.zeros(1, 1))


def test_text_only_inputs_are_not_edited(image):
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(None, PROMPT)
    with liveedit.disable_adapter():
        base_logits = logits(liveedit, inputs)
    assert torch.equal(logits(liveedit, inputs), base_logits)


def test_answer_tokens_take_no_part_in_routing(family, image):
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(image, PROMPT, TARGET)
    liveedit.add_edit(tiny_image(5), "Name the animal.", "cat")
    with liveedit.record_routing() as routing:
        logits(liveedit, liveedit.build_inputs(image, PROMPT))
        logits(liveedit, liveedit.build_inputs(image, PROMPT, targets=TARGET))
    prompt_only, with_answer = routing
    torch.testing.assert_close(with_answer, prompt_only)


def test_generate_reuses_prefill_routing_for_decoding(image):
    """Cached decoding equals re-running the whole sequence with generated tokens as answers."""
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(image, PROMPT)
    generated = greedy(liveedit, inputs, steps=4)
    with liveedit.disable_adapter():
        assert not torch.equal(greedy(liveedit, inputs, steps=4), generated)
    sequence, prompt_length = inputs["input_ids"], inputs["input_ids"].shape[1]
    for _ in range(4):
        labels = sequence.clone()
        labels[:, :prompt_length] = -100
        step = {**inputs, "input_ids": sequence, "labels": labels}
        step["attention_mask"] = torch.ones_like(sequence)
        next_token = logits(liveedit, step)[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(sequence, generated)


def test_batched_generate_routes_each_sample(family, image, other_image):
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(image, PROMPT, TARGET)
    liveedit.add_edit(other_image, "Name it.", "Paris")
    prompts, images = [PROMPT, "Name it."], [image, other_image]
    batch = liveedit.build_inputs(images, prompts)
    with liveedit.record_routing() as routing:
        batch_tokens = greedy(liveedit, batch)
    (batch_weights,) = routing  # one prefill; decoding steps reuse its routing
    new_tokens = batch_tokens[:, batch["input_ids"].shape[1] :]
    for row, (one_image, prompt) in enumerate(zip(images, prompts)):
        single = liveedit.build_inputs(one_image, prompt)
        with liveedit.record_routing() as routing:
            single_tokens = greedy(liveedit, single)
        torch.testing.assert_close(routing[0][0], batch_weights[row])
        assert torch.equal(single_tokens[0, single["input_ids"].shape[1] :], new_tokens[row])
    assert not torch.allclose(batch_weights[0], batch_weights[1])


def test_add_edits_batched_equals_one_by_one(image, other_image):
    one_by_one = make_liveedit("llava")
    batched = make_liveedit("llava")
    batched.liveedit_modules.load_state_dict(one_by_one.liveedit_modules.state_dict())
    prompts, targets = [PROMPT, "Name it, please."], [TARGET, "a much longer answer"]
    for one_image, prompt, target in zip([image, other_image], prompts, targets):
        one_by_one.add_edit(one_image, prompt, target)
    batched.add_edits([image, other_image], prompts, targets, batch_size=2)
    for name in ("up", "down", "phi", "psi"):
        torch.testing.assert_close(
            getattr(batched.repository, name),
            getattr(one_by_one.repository, name),
            atol=1e-5,
            rtol=1e-4,
        )


def test_edit_metadata(image, other_image, tmp_path):
    liveedit = make_liveedit("llava")
    edit_id = liveedit.add_edit(image, PROMPT, TARGET)
    (record,) = liveedit.edits
    assert record.id == edit_id and record.prompt == PROMPT and record.target == TARGET
    # SHA-256 of "<width>x<height>:" and the RGB pixel bytes, computed here by hand
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).tobytes()  # rows of RGB triples
    expected = hashlib.sha256(f"{image.width}x{image.height}:".encode() + pixels).hexdigest()
    assert record.image_sha256 == expected and record.created_at > 0
    assert len(liveedit.edits) == 1
    # the same pixels from a PNG file, or with an opaque alpha channel, hash the same
    image.save(tmp_path / "edit.png")
    liveedit.add_edits([tmp_path / "edit.png", image.convert("RGBA")], [PROMPT] * 2, [TARGET] * 2)
    liveedit.add_edit(other_image, PROMPT, TARGET)
    hashes = [edit.image_sha256 for edit in liveedit.edits]
    assert hashes[:3] == [expected] * 3 and hashes[3] != expected
    liveedit.clear_edits()
    assert len(liveedit.edits) == 0 and liveedit.repository.up.shape[0] == 0


@pytest.mark.parametrize(
    ("image_arg", "prompt", "target", "error"),
    [
        ("not-an-image.png", PROMPT, TARGET, FileNotFoundError),
        (torch.zeros(3, 8, 8), PROMPT, TARGET, TypeError),
        (None, PROMPT, TARGET, TypeError),
        ("IMAGE", "", TARGET, ValueError),
        ("IMAGE", PROMPT, "   ", ValueError),
        ("IMAGE", PROMPT, 42, TypeError),
    ],
)
def test_bad_edit_input_is_rejected_and_changes_nothing(image, image_arg, prompt, target, error):
    liveedit = make_liveedit("llava")
    liveedit.add_edit(image, PROMPT, TARGET)
    before = liveedit.repository.state_dict()
    image_arg = image if image_arg == "IMAGE" else image_arg
    with pytest.raises(error):
        liveedit.add_edits([image, image_arg], [PROMPT, prompt], [TARGET, target])
    assert len(liveedit.edits) == 1
    for name, value in liveedit.repository.state_dict().items():
        assert torch.equal(value, before[name])


def test_target_that_tokenizes_to_nothing_is_rejected(image, monkeypatch):
    liveedit = make_liveedit("llava")
    tokenizer = liveedit.processor.tokenizer
    original = type(tokenizer).__call__

    def dropping_call(self, text, *args, **kwargs):
        encoded = original(self, text, *args, **kwargs)
        if text == " \u2205":  # pretend this tokenizer drops the empty-set sign
            encoded["input_ids"] = []
        return encoded

    monkeypatch.setattr(type(tokenizer), "__call__", dropping_call)
    with pytest.raises(ValueError, match="tokenizes to no tokens"):
        liveedit.add_edit(image, PROMPT, "\u2205")
    assert len(liveedit.edits) == 0


def test_unknown_edit_id_and_bad_layer():
    liveedit = make_liveedit("llava")
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    for error in (KeyError, ValueError):
        with pytest.raises(error, match="No edit with id 'no-such-id'"):
            liveedit.remove_edit("no-such-id")
    assert len(liveedit.edits) == 1
    with pytest.raises(ValueError, match="edit_layer 99 is out of range"):
        make_liveedit("llava", edit_layer=99)


def test_unsupported_model_names_supported_classes():
    model, _ = tiny_text_model()
    with pytest.raises(TypeError, match="LlavaForConditionalGeneration") as excinfo:
        get_liveedit_model(model, LiveEditConfig())
    assert "LlamaForCausalLM" in str(excinfo.value)
    assert set(supported_model_classes()) >= {
        "LlavaForConditionalGeneration",
        "Blip2ForConditionalGeneration",
        "Idefics3ForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
    }


def test_default_edit_layer_is_two_thirds_of_depth():
    liveedit = make_liveedit("llava")
    assert liveedit.liveedit_config.edit_layer == int(liveedit.backbone.num_layers * 2 / 3)


def test_config_json_round_trip(tmp_path):
    config = LiveEditConfig(edit_layer=3, rank=8, expert_dtype="float16")
    config.save_pretrained(tmp_path, extra_key=1)
    loaded, extra = LiveEditConfig.from_pretrained(tmp_path)
    assert loaded == config and extra == {"extra_key": 1, "hf_liveedit_version": __version__}
    with pytest.raises(ValueError, match="expert_dtype"):
        LiveEditConfig(expert_dtype="int8")
    with pytest.raises(ValueError, match="Unknown"):
        LiveEditConfig.from_dict({"nope": 1})


def test_pipeline_returns_edited_answer(image):
    from transformers import pipeline

    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    pipe = pipeline("image-text-to-text", model=liveedit, processor=liveedit.processor)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": PROMPT}],
        }
    ]

    def answer() -> str:
        return pipe(text=messages, max_new_tokens=4, do_sample=False)[0]["generated_text"][-1][
            "content"
        ]

    base_answer = answer()
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(image, PROMPT)
    direct = greedy(liveedit, inputs, steps=4)[0, inputs["input_ids"].shape[1] :]
    edited_answer = answer()
    assert edited_answer == liveedit.processor.decode(direct, skip_special_tokens=True)
    assert edited_answer != base_answer
