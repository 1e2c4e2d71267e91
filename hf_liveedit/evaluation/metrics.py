"""Editing metrics as the field computes them, in plain Python and torch.

Rel, T-Gen and M-Gen are teacher-forced **token accuracy**: the prompt and the target are fed
together, the argmax at each target position is compared with the target token, and each sample
scores the fraction it gets right. T-Loc, M-Loc and N-Loc compare two sets of argmax tokens
instead: the fraction of locality-answer positions where the edited model predicts what the
unedited model predicts (N-Loc asks the edited question on a neighbour's image: another entity of
the same relation, not edited). Both reduce to :func:`token_match`; the ``evaluate`` metric
module (:mod:`hf_liveedit.evaluation.liveedit_metrics`) wraps the same functions.

Logits at position ``t`` predict token ``t + 1``, so the prediction for an answer token at
position ``p`` is read at ``p - 1`` (:func:`answer_predictions`).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

import torch

IGNORE_INDEX = -100

#: The five teacher-forced metrics the papers report; ``avg`` is their mean.
PAPER_METRICS: tuple[str, ...] = ("rel", "t_gen", "m_gen", "t_loc", "m_loc")
#: Teacher-forced metrics, in table order: the papers' five and neighbourhood locality (N-Loc).
METRICS: tuple[str, ...] = PAPER_METRICS + ("n_loc",)
#: Greedy-generation figures, the stricter extras: exact match with the target for the
#: generality-type samples; for N-Loc, whether the greedy answer is the unedited model's.
EXACT_MATCH_METRICS: tuple[str, ...] = ("rel_em", "t_gen_em", "m_gen_em", "n_loc_same")
#: Display names.
METRIC_NAMES: dict[str, str] = {
    "rel": "Rel",
    "t_gen": "T-Gen",
    "m_gen": "M-Gen",
    "t_loc": "T-Loc",
    "m_loc": "M-Loc",
    "n_loc": "N-Loc",
    "rel_em": "Rel EM",
    "t_gen_em": "T-Gen EM",
    "m_gen_em": "M-Gen EM",
    "n_loc_same": "N-Loc same",
}


def answer_predictions(logits: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """The argmax token predicted for each answer token, per sample.

    Args:
        logits: ``[B, L, V]`` logits; position ``t`` predicts token ``t + 1``.
        labels: ``[B, L]`` answer token ids, ``-100`` elsewhere (as in
            :meth:`hf_liveedit.LiveEditModel.build_inputs`).

    Returns:
        For each sample, the predicted ids at its answer positions, in order.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must share [B, L]"
        )
    predicted = logits[:, :-1].argmax(dim=-1)
    mask = labels[:, 1:] != IGNORE_INDEX
    return [row[keep].tolist() for row, keep in zip(predicted, mask)]


def answer_targets(labels: torch.Tensor) -> list[list[int]]:
    """The answer token ids of each sample (the references for token accuracy).

    Args:
        labels: ``[B, L]`` answer token ids, ``-100`` elsewhere.

    Returns:
        For each sample, its answer ids, aligned with :func:`answer_predictions`.
    """
    shifted = labels[:, 1:]
    return [row[row != IGNORE_INDEX].tolist() for row in shifted]


def answer_window(labels: torch.Tensor) -> int:
    """How many final positions hold the predictions of every answer token: longest answer + 1.

    Answers sit at the end of left-padded sequences, so ``logits[:, -answer_window(labels):]``
    with ``labels[:, -answer_window(labels):]`` is all :func:`answer_predictions` needs.
    """
    return int((labels != IGNORE_INDEX).sum(dim=1).max()) + 1


def token_match(
    predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]
) -> list[float]:
    """Per sample, the fraction of positions where the prediction equals the reference.

    With the target tokens as references this is token accuracy (Rel, T-Gen, M-Gen); with the
    unedited model's argmax tokens it is locality (T-Loc, M-Loc, N-Loc).

    Args:
        predictions: token ids per sample.
        references: token ids per sample, each as long as its prediction.

    Returns:
        One score in ``[0, 1]`` per sample.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scores = []
    for predicted, reference in zip(predictions, references):
        if len(predicted) != len(reference) or not reference:
            raise ValueError(
                f"a prediction of {len(predicted)} tokens cannot be scored against a reference "
                f"of {len(reference)} tokens (they must be equally long and not empty)"
            )
        scores.append(sum(p == r for p, r in zip(predicted, reference)) / len(reference))
    return scores


_PUNCTUATION = re.escape(string.punctuation)


def normalize_answer(text: str) -> str:
    """Case-folded text with whitespace collapsed and surrounding punctuation removed."""
    text = " ".join(text.casefold().split())
    return re.sub(f"^[{_PUNCTUATION}\\s]+|[{_PUNCTUATION}\\s]+$", "", text)


def exact_match(generated: str, target: str) -> float:
    """1.0 when a greedy answer spells the target, else 0.0.

    Both sides go through :func:`normalize_answer` (case, whitespace, surrounding punctuation).
    The harness generates exactly as many tokens as the target has in context, so the answer
    must reproduce the target and nothing is asked of what would follow it (no editor trains an
    end-of-answer token).

    Args:
        generated: the decoded greedy continuation of the prompt.
        target: the expected answer.

    Returns:
        1.0 or 0.0.
    """
    expected = normalize_answer(target)
    if not expected:
        raise ValueError("exact_match needs a non-empty target")
    return float(normalize_answer(generated) == expected)


def same_answer(edited: str, unedited: str) -> float:
    """1.0 when the edited model's greedy answer is the unedited model's, else 0.0 (N-Loc same).

    The strings are compared as they are (no normalisation): any change of the decoded answer
    counts. Both answers are generated the same way (see
    :func:`~hf_liveedit.evaluation.scoring.greedy_answer_tokens`).

    Args:
        edited: the decoded greedy answer after the edits.
        unedited: the decoded greedy answer of the unedited model.

    Returns:
        1.0 or 0.0.
    """
    return float(edited == unedited)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for an empty sequence (a metric with no samples)."""
    return sum(values) / len(values) if values else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1); 0.0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    centre = mean(values)
    return math.sqrt(sum((value - centre) ** 2 for value in values) / (len(values) - 1))
