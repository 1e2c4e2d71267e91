"""Score an editor on edit cases: the five metrics (and exact match) per case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hf_liveedit.evaluation.cases import EditCase, Sample
from hf_liveedit.evaluation.metrics import (
    METRICS,
    answer_predictions,
    answer_targets,
    answer_window,
    exact_match,
    token_match,
)

if TYPE_CHECKING:
    from hf_liveedit.evaluation.editors.base import Editor

LOCALITY: tuple[str, ...] = ("t_loc", "m_loc")
GENERALITY: tuple[str, ...] = ("rel", "t_gen", "m_gen")


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def predict_answers(
    editor: Editor, samples: Sequence[Sample], batch_size: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Teacher-forced argmax tokens at the answer positions, and the answer tokens.

    Args:
        editor: the editor in its current state.
        samples: all with images or all text-only.
        batch_size: samples per forward pass.

    Returns:
        ``(predictions, targets)``: one token list each per sample.
    """
    predictions: list[list[int]] = []
    targets: list[list[int]] = []
    for batch in _batches(samples, batch_size):
        images = None if batch[0].image is None else [sample.image for sample in batch]
        inputs = editor.build_inputs(
            images, [sample.prompt for sample in batch], [sample.target for sample in batch]
        )
        labels = inputs["labels"]
        keep = answer_window(labels)
        logits = editor.logits(inputs, keep)
        predictions += answer_predictions(logits, labels[:, -keep:])
        targets += answer_targets(labels)
    return predictions, targets


def greedy_exact_match(editor: Editor, samples: Sequence[Sample], batch_size: int) -> list[float]:
    """Exact match of each sample's greedy answer (see :func:`~hf_liveedit.evaluation.metrics.exact_match`).

    Each answer is as many greedy tokens as the target has in context (read from the labels of
    the teacher-forced inputs), decoded without special tokens.
    """
    tokenizer = editor.processor.tokenizer
    scores: list[float] = []
    for batch in _batches(samples, batch_size):
        images = None if batch[0].image is None else [sample.image for sample in batch]
        prompts = [sample.prompt for sample in batch]
        labels = editor.build_inputs(images, prompts, [sample.target for sample in batch])["labels"]
        lengths = (labels != -100).sum(dim=1).tolist()
        new_tokens = editor.generate(editor.build_inputs(images, prompts), max(lengths))
        for row, (sample, length) in enumerate(zip(batch, lengths)):
            text = tokenizer.decode(new_tokens[row, :length], skip_special_tokens=True)
            scores.append(exact_match(text, sample.target))
    return scores


def locality_reference(
    editor: Editor, cases: Sequence[EditCase], batch_size: int = 16
) -> dict[int, dict[str, list[int]]]:
    """The unedited model's argmax tokens on each case's locality answers.

    Call it with the editor reset; T-Loc and M-Loc compare the edited model against these.

    Returns:
        ``{case.index: {"t_loc": tokens, "m_loc": tokens}}`` (kinds the case lacks are absent).
    """
    reference: dict[int, dict[str, list[int]]] = {case.index: {} for case in cases}
    for kind in LOCALITY:
        present = [case for case in cases if case.sample(kind) is not None]
        predictions, _ = predict_answers(editor, [c.sample(kind) for c in present], batch_size)
        for case, tokens in zip(present, predictions):
            reference[case.index][kind] = tokens
    return reference


def score_cases(
    editor: Editor,
    cases: Sequence[EditCase],
    reference: dict[int, dict[str, list[int]]],
    batch_size: int = 16,
    with_exact_match: bool = True,
) -> list[dict[str, float | None]]:
    """Score the editor's current model on each case.

    Args:
        editor: the editor after its edits.
        cases: the cases to score.
        reference: from :func:`locality_reference` (covering these cases).
        batch_size: samples per forward pass.
        with_exact_match: also run greedy generation for ``rel_em``, ``t_gen_em``, ``m_gen_em``.

    Returns:
        Per case, ``{"index": ..., metric: score or None when the case lacks that sample}``.
    """
    results: list[dict[str, float | None]] = [
        {"index": case.index, **dict.fromkeys(METRICS)} for case in cases
    ]
    for kind in METRICS:
        rows = [row for row, case in enumerate(cases) if case.sample(kind) is not None]
        samples = [cases[row].sample(kind) for row in rows]
        predictions, targets = predict_answers(editor, samples, batch_size)
        if kind in LOCALITY:
            targets = [reference[cases[row].index][kind] for row in rows]
        for row, score in zip(rows, token_match(predictions, targets)):
            results[row][kind] = score
        if with_exact_match and kind in GENERALITY:
            for row, score in zip(rows, greedy_exact_match(editor, samples, batch_size)):
                results[row][f"{kind}_em"] = score
    return results
