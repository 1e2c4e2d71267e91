"""Projector training pieces, the held-out split and the Qt resource reader, on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from hf_liveedit.embedded.evaluation import normalize_answer, split_rows, summarize
from hf_liveedit.embedded.projector import (
    TurnEncoder,
    answer_logits,
    make_examples,
    token_accuracy,
    train_projector,
)
from hf_liveedit.embedded.sources import CaptionedImage, _short_name
from hf_liveedit.embedded.tiny import tiny_lite_llava

RECORDS = [
    CaptionedImage("tuxpaint", "animals/bison", "Bison", "A bison."),
    CaptionedImage(
        "tuxpaint",
        "medical/stethoscope",
        "",
        "A stethoscope lets your doctor listen to your heart and lungs.",
    ),
    CaptionedImage("kgeography", "france.png", "Flag of France", "The flag of France."),
]


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_lite_llava()
    encoder = TurnEncoder(processor, model.config.image_seq_length)
    features = torch.randn(len(RECORDS), 4, model.config.vision_config.hidden_size)
    return model, encoder, features


def test_examples_skip_missing_names() -> None:
    examples = make_examples(RECORDS, [0, 1, 2])
    assert [(e.row, e.task) for e in examples] == [
        (0, "caption"),
        (0, "name"),
        (1, "caption"),
        (2, "caption"),
        (2, "name"),
    ]


def test_answer_logits_align_with_answer_tokens(tiny) -> None:
    model, encoder, features = tiny
    examples = make_examples(RECORDS, [0, 2])
    logits, targets = answer_logits(model, encoder, features, examples)
    expected = [t for e in examples for t in encoder.answer_ids(e.answer)]
    assert targets.tolist() == expected
    assert logits.shape == (len(expected), model.config.text_config.vocab_size)
    prompt = encoder.prompts["name"]
    assert prompt.count(encoder.image_token_id) == 4


def test_training_lowers_the_loss_and_folds_the_standardization(tiny) -> None:
    model, encoder, features = tiny
    examples = make_examples(RECORDS, [0, 1, 2])

    def loss() -> float:
        with torch.no_grad():
            logits, targets = answer_logits(model, encoder, features, examples)
        return torch.nn.functional.cross_entropy(logits, targets).item()

    frozen = model.model.language_model.layers[0].mlp.up_proj.weight.clone()
    start = loss()
    losses = train_projector(model, encoder, features, examples, steps=8, batch_size=5, lr=1e-2)
    assert len(losses) == 8
    assert loss() < start
    assert torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight, frozen)
    scores = token_accuracy(model, encoder, features, examples)
    assert [total for _, total in scores] == [
        len(encoder.answer_ids(e.answer)) - 1 for e in examples
    ]
    summary = summarize(RECORDS, examples, scores)
    assert summary["all/name"]["n"] == 2 and summary["tuxpaint/caption"]["n"] == 2


def test_split_is_by_entity_and_deterministic() -> None:
    records = [
        CaptionedImage("tuxpaint", f"letters/{style}/{c}", f"Letter {c}", f"The letter {c}.")
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        for style in ("filled", "outlined")
    ]
    train, held = split_rows(records, held_out_percent=30)
    assert split_rows(records, held_out_percent=30) == (train, held)
    assert held and train
    held_names = {records[r].name for r in held}
    assert not held_names & {records[r].name for r in train}


def test_names_and_normalization() -> None:
    assert _short_name("A brown slug.") == "Brown slug"
    assert _short_name("A stethoscope lets your doctor listen to your heart.") is None
    assert _short_name("“No U-Turn”.") is None
    assert normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("Flag of the Falkland Islands.") == "flag of falkland islands"
