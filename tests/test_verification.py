"""Verified edits: an edit's expert is refined until its greedy answer is the target."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit import model as model_module
from hf_liveedit.repository import TENSOR_NAMES
from hf_liveedit.testing.tiny_models import tiny_image
from hf_liveedit.verification import answer_logits

VERIFY = dict(
    expert_scale=5.0,
    verify_edits=True,
    refine_steps=40,
    refine_lr=0.2,
    refine_routing_margin=None,
)


def greedy_answer(liveedit, image, prompt: str, target: str) -> list[int]:
    """The greedy continuation, as many tokens as the target has: decoded with ``generate``."""
    tokenizer = liveedit.processor.tokenizer
    prompt_inputs = liveedit.build_inputs(image, prompt)
    target_ids = liveedit.build_inputs(image, prompt, target)["labels"][0]
    length = int((target_ids != -100).sum())
    out = liveedit.generate(
        **prompt_inputs,
        max_new_tokens=length,
        min_new_tokens=length,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, prompt_inputs["input_ids"].shape[1] :].tolist()


def target_ids(liveedit, image, prompt: str, target: str) -> list[int]:
    labels = liveedit.build_inputs(image, prompt, target)["labels"][0]
    return labels[labels != -100].tolist()


def test_a_generated_expert_that_misses_is_refined_until_greedy_answers_the_target():
    edit = (tiny_image(1), "Name it.", "Paris")
    plain = make_liveedit("llava", **{**VERIFY, "verify_edits": False})
    rig_routing(plain, keep=True)
    plain.add_edit(*edit)
    assert greedy_answer(plain, *edit) != target_ids(plain, *edit)  # the generator alone misses
    assert plain.edits[0].took is None and plain.edits[0].refine_steps == 0

    liveedit = make_liveedit("llava", **VERIFY)
    rig_routing(liveedit, keep=True)
    record = liveedit.get_edit(liveedit.add_edit(*edit))
    assert record.took is True and 0 < record.refine_steps <= VERIFY["refine_steps"]
    assert greedy_answer(liveedit, *edit) == target_ids(liveedit, *edit)  # checked by generate
    # only U and V were refined: the routing features are the generator's
    for name in ("phi", "psi"):
        torch.testing.assert_close(liveedit.repository.tensor(name), plain.repository.tensor(name))
    assert not torch.equal(liveedit.repository.up, plain.repository.up)


def target_probabilities(liveedit, image, prompt: str, target: str) -> torch.Tensor:
    """Teacher-forced probability of each target token on the edit input, experts routed."""
    logits, answers = answer_logits(liveedit, liveedit.build_inputs(image, prompt, target))
    return logits.float().softmax(-1).gather(-1, answers[..., None].clamp_min(0))[0, :, 0]


def test_a_minimum_probability_refines_past_the_greedy_answer_until_every_token_is_likely():
    edit = (tiny_image(1), "Name it.", "Paris")
    greedy = make_liveedit("llava", **VERIFY)
    rig_routing(greedy, keep=True)
    first = greedy.get_edit(greedy.add_edit(*edit))
    with torch.no_grad():
        # the tiny model's distribution is flat: its greedy answer is far from certain
        minimum = 1.5 * float(target_probabilities(greedy, *edit).min())

    likely = make_liveedit("llava", **VERIFY, refine_min_probability=minimum)
    rig_routing(likely, keep=True)
    record = likely.get_edit(likely.add_edit(*edit))
    assert record.took is True and first.refine_steps < record.refine_steps < 40
    with torch.no_grad():
        assert target_probabilities(likely, *edit).min() >= minimum


def test_an_edit_the_router_drops_cannot_take_without_rerouting_and_says_so():
    liveedit = make_liveedit("llava", **{**VERIFY, "refine_steps": 3})
    rig_routing(liveedit, keep=False)  # the edit's own input keeps no expert
    with pytest.warns(UserWarning, match="1 of 1 edits did not take"):
        edit_id = liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    record = liveedit.get_edit(edit_id)
    assert record.took is False and record.refine_steps == 0  # no gradient reaches the expert


def test_a_failure_during_verification_stores_nothing(monkeypatch):
    liveedit = make_liveedit("llava", **VERIFY)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    before = {name: liveedit.repository.tensor(name).clone() for name in TENSOR_NAMES}
    calls = []
    refine = model_module.refine_new_experts

    def failing_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return refine(*args, **kwargs)

    monkeypatch.setattr(model_module, "refine_new_experts", failing_second_batch)
    with pytest.raises(RuntimeError, match="out of memory"):
        liveedit.add_edits(
            [tiny_image(1), tiny_image(2)], ["Name it."] * 2, ["a", "b"], batch_size=1
        )
    assert len(liveedit.edits) == 1
    for name in TENSOR_NAMES:
        assert torch.equal(liveedit.repository.tensor(name), before[name])


def test_an_edit_that_needs_more_steps_than_the_budget_is_stored_and_reported():
    liveedit = make_liveedit("llava", **{**VERIFY, "refine_steps": 1})
    rig_routing(liveedit, keep=True)
    with pytest.warns(UserWarning, match="1 of 1 edits did not take within refine_steps=1"):
        edit_id = liveedit.add_edit(tiny_image(1), "Name it.", "Paris")
    record = liveedit.get_edit(edit_id)
    assert record.took is False and record.refine_steps == 1 and len(liveedit.edits) == 1


def test_rerouting_moves_only_a_dropped_key_along_its_own_input_until_it_passes():
    margin = 0.5
    liveedit = make_liveedit("llava", **{**VERIFY, "refine_routing_margin": margin})
    rig_routing(liveedit, keep=False)  # generated keys are filtered for their own input
    plain = make_liveedit("llava", **{**VERIFY, "verify_edits": False})
    rig_routing(plain, keep=False)
    edit = (tiny_image(1), "Name it.", "Paris")
    plain.add_edit(*edit)
    record = liveedit.get_edit(liveedit.add_edit(*edit))
    assert record.rerouted and record.took is True

    # by hand: the own input's features, and the key's margin over the sentinel
    inputs = liveedit.build_inputs(*edit)
    spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    with torch.no_grad():
        hidden = liveedit.hidden_states_at_edit_layer(inputs)
        features = liveedit.liveedit_modules.input_features(hidden, spans)
    phi_in = features.phi[0].double().flatten()
    scale = phi_in.new_tensor(features.phi.shape[1] * features.phi.shape[2] ** 0.5)
    key, generated = (r.phi[0].double().flatten() for r in (liveedit.repository, plain.repository))
    sentinel = features.phi_sentinel[0].double().flatten()
    assert (phi_in @ generated - phi_in @ sentinel) / scale < 0  # dropped as generated
    assert (phi_in @ key - phi_in @ sentinel) / scale == pytest.approx(margin, rel=1e-4)
    moved = key - generated  # along phi_in only
    assert torch.allclose(moved, (moved @ phi_in) / (phi_in @ phi_in) * phi_in, atol=1e-6)
    with liveedit.record_routing() as routing, torch.no_grad():
        liveedit(**liveedit.build_inputs(edit[0], edit[1]))
    assert routing[0][0, 0] > 0  # kept now at inference


def test_image_keys_are_never_moved_by_verification():
    """The image-key filter's similarity is a cosine: a margin in sim units would scale keys."""
    config = {**VERIFY, "refine_routing_margin": 1.0, "hard_routing": "image_key"}
    liveedit = make_liveedit("llava", image_key_positions=4, **config)
    plain = make_liveedit("llava", image_key_positions=4, **{**config, "verify_edits": False})
    edit = (tiny_image(1), "Name it.", "Paris")
    plain.add_edit(*edit)
    record = liveedit.get_edit(liveedit.add_edit(*edit))
    assert not record.rerouted
    torch.testing.assert_close(liveedit.repository.phi, plain.repository.phi)
