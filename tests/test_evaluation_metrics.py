"""Editing metrics on hand-made logits, the evaluate module, and record -> samples."""

from __future__ import annotations

import math

import pytest
import torch

from hf_liveedit.data.prompts import format_prompt
from hf_liveedit.evaluation import METRIC_PATH
from hf_liveedit.evaluation.cases import case_from_row
from hf_liveedit.evaluation.metrics import (
    answer_predictions,
    answer_targets,
    answer_window,
    exact_match,
    mean,
    std,
    token_match,
)

IGNORE = -100


def one_hot_logits(rows: list[list[int]], vocab: int = 10) -> torch.Tensor:
    """Logits whose argmax at each position is the given token."""
    logits = torch.zeros(len(rows), len(rows[0]), vocab)
    for b, row in enumerate(rows):
        for t, token in enumerate(row):
            logits[b, t, token] = 5.0
    return logits


# Two left-padded sequences; answers: [7, 8] for the first, [9] for the second.
LABELS = torch.tensor([[IGNORE, IGNORE, IGNORE, 7, 8], [IGNORE, IGNORE, IGNORE, IGNORE, 9]])


def test_answer_predictions_read_the_previous_position():
    # Position t predicts token t+1: the predictions for the answers sit at positions 2-3 and 3.
    logits = one_hot_logits([[0, 0, 7, 3, 0], [0, 0, 0, 9, 0]])
    assert answer_predictions(logits, LABELS) == [[7, 3], [9]]
    assert answer_targets(LABELS) == [[7, 8], [9]]


def test_token_accuracy_is_the_per_sample_fraction_then_the_mean():
    logits = one_hot_logits([[0, 0, 7, 3, 0], [0, 0, 0, 9, 0]])
    scores = token_match(answer_predictions(logits, LABELS), answer_targets(LABELS))
    assert scores == [0.5, 1.0]
    assert mean(scores) == 0.75


def test_locality_compares_edited_with_unedited_argmax():
    unedited = one_hot_logits([[0, 0, 4, 4, 0], [0, 0, 0, 2, 0]])
    edited = one_hot_logits([[1, 1, 4, 5, 1], [0, 0, 0, 2, 0]])  # changes outside don't count
    reference = answer_predictions(unedited, LABELS)
    assert token_match(answer_predictions(edited, LABELS), reference) == [0.5, 1.0]
    assert token_match(reference, reference) == [1.0, 1.0]


def test_answer_window_covers_every_answer_prediction():
    keep = answer_window(LABELS)
    assert keep == 3
    logits = one_hot_logits([[0, 0, 7, 3, 0], [0, 0, 0, 9, 0]])
    sliced = answer_predictions(logits[:, -keep:], LABELS[:, -keep:])
    assert sliced == answer_predictions(logits, LABELS)


def test_token_match_rejects_misaligned_inputs():
    with pytest.raises(ValueError):
        token_match([[1, 2]], [[1]])
    with pytest.raises(ValueError):
        token_match([[1]], [[1], [2]])


def test_exact_match_normalises_case_space_and_punctuation():
    assert exact_match(" paris.", "Paris") == 1.0
    assert exact_match("New  York", "new york") == 1.0
    assert exact_match("Parisian", "Paris") == 0.0
    assert exact_match("Lyon", "Paris") == 0.0


def test_mean_and_std():
    assert math.isnan(mean([]))
    assert std([0.5]) == 0.0
    assert std([0.0, 1.0]) == pytest.approx(math.sqrt(0.5))


def test_evaluate_module_wraps_the_same_functions():
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(METRIC_PATH))
    result = metric.compute(predictions=[[7, 3], [9]], references=[[7, 8], [9]])
    assert result == {"token_accuracy": 0.75}
    em = evaluate.load(str(METRIC_PATH), config_name="exact_match")
    assert em.compute(predictions=["Paris.", "Rome"], references=["paris", "Lyon"]) == {
        "exact_match": 0.5
    }


def test_case_from_row_formats_prompts_with_the_data_module(image, other_image):
    row = {
        "src": "What is the capital?",
        "rephrase": "Name the capital.",
        "alt": "Lyon",
        "image": image,
        "image_rephrase": other_image,
        "loc": "nq question: who wrote hamlet",
        "loc_ans": "Shakespeare",
        "m_loc": other_image,
        "m_loc_q": "What animal is this?",
        "m_loc_a": "a cat",
        "task": "vqa",
    }
    case = case_from_row(row, 3)
    assert case.index == 3
    assert case.edit.prompt == format_prompt("What is the capital?", "vqa")
    assert case.t_gen.prompt == format_prompt("Name the capital.", "vqa")
    assert case.m_gen.image is other_image and case.m_gen.prompt == case.edit.prompt
    assert case.t_loc.image is None and case.t_loc.prompt == "nq question: who wrote hamlet"
    assert case.m_loc.prompt == format_prompt("What animal is this?", "vqa")
    assert case.sample("rel") is case.edit
    sparse = case_from_row({**row, "rephrase": "", "m_loc": None}, 0)
    assert sparse.t_gen is None and sparse.m_loc is None
