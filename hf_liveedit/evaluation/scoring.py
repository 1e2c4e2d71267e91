"""Score an editor on edit cases: the teacher-forced metrics (and greedy figures) per case."""

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
    same_answer,
    token_match,
)

if TYPE_CHECKING:
    from hf_liveedit.evaluation.editors.base import Editor

LOCALITY: tuple[str, ...] = ("t_loc", "m_loc", "n_loc")
GENERALITY: tuple[str, ...] = ("rel", "t_gen", "m_gen")
#: Locality kinds whose sample depends on the chunk (its neighbour must not be edited there):
#: their unedited references are computed per chunk, before the chunk's edits.
CHUNK_LOCALITY: tuple[str, ...] = ("n_loc",)


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


def greedy_answer_tokens(
    editor: Editor, samples: Sequence[Sample], batch_size: int
) -> list[list[int]]:
    """Each sample's greedy answer: as many new tokens as its target has in context.

    The length is read from the labels of the teacher-forced inputs; decode with
    :func:`decode_answer`.

    Args:
        editor: the editor in its current state.
        samples: all with images or all text-only.
        batch_size: samples per generation call.

    Returns:
        One token list per sample.
    """
    answers: list[list[int]] = []
    for batch in _batches(samples, batch_size):
        images = None if batch[0].image is None else [sample.image for sample in batch]
        prompts = [sample.prompt for sample in batch]
        labels = editor.build_inputs(images, prompts, [sample.target for sample in batch])["labels"]
        lengths = (labels != -100).sum(dim=1).tolist()
        new_tokens = editor.generate(editor.build_inputs(images, prompts), max(lengths))
        answers += [new_tokens[row, :length].tolist() for row, length in enumerate(lengths)]
    return answers


def decode_answer(editor: Editor, tokens: Sequence[int]) -> str:
    """A greedy answer's text, decoded without special tokens."""
    return editor.processor.tokenizer.decode(tokens, skip_special_tokens=True)


def greedy_exact_match(editor: Editor, samples: Sequence[Sample], batch_size: int) -> list[float]:
    """Exact match of each sample's greedy answer (see :func:`~hf_liveedit.evaluation.metrics.exact_match`).

    Each answer is as many greedy tokens as the target has in context (read from the labels of
    the teacher-forced inputs), decoded without special tokens.
    """
    answers = greedy_answer_tokens(editor, samples, batch_size)
    return [
        exact_match(decode_answer(editor, tokens), sample.target)
        for tokens, sample in zip(answers, samples)
    ]


def locality_reference(
    editor: Editor,
    cases: Sequence[EditCase],
    batch_size: int = 16,
    kinds: Sequence[str] = LOCALITY,
    with_exact_match: bool = True,
) -> dict[int, dict[str, list[int]]]:
    """The unedited model's argmax tokens on each case's locality answers.

    Call it with the editor reset; T-Loc, M-Loc and N-Loc compare the edited model against
    these. N-Loc samples change with the chunk, so the protocol calls this once for T-Loc /
    M-Loc and per chunk, before its edits, for :data:`CHUNK_LOCALITY`.

    Args:
        editor: the editor, reset.
        cases: the cases.
        batch_size: samples per forward pass.
        kinds: the locality kinds to reference.
        with_exact_match: also keep the unedited greedy answer of N-Loc samples (``n_loc_same``).

    Returns:
        ``{case.index: {kind: tokens, "n_loc_greedy": tokens}}`` (kinds the case lacks are absent).
    """
    reference: dict[int, dict[str, list[int]]] = {case.index: {} for case in cases}
    for kind in kinds:
        present = [case for case in cases if case.sample(kind) is not None]
        samples = [case.sample(kind) for case in present]
        predictions, _ = predict_answers(editor, samples, batch_size)
        for case, tokens in zip(present, predictions):
            reference[case.index][kind] = tokens
        if with_exact_match and kind in CHUNK_LOCALITY:
            for case, tokens in zip(present, greedy_answer_tokens(editor, samples, batch_size)):
                reference[case.index][f"{kind}_greedy"] = tokens
    return reference


def same_greedy_answer(
    editor: Editor, samples: Sequence[Sample], unedited: Sequence[Sequence[int]], batch_size: int
) -> list[float]:
    """Per sample, 1.0 when the editor's greedy answer decodes to the unedited one (``n_loc_same``).

    Args:
        editor: the editor after its edits.
        samples: the samples.
        unedited: the unedited model's greedy answer tokens per sample (from
            :func:`locality_reference`).
        batch_size: samples per generation call.
    """
    answers = greedy_answer_tokens(editor, samples, batch_size)
    return [
        same_answer(decode_answer(editor, tokens), decode_answer(editor, before))
        for tokens, before in zip(answers, unedited)
    ]


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
        with_exact_match: also run greedy generation for ``rel_em``, ``t_gen_em``, ``m_gen_em``
            and ``n_loc_same`` (which needs the reference's ``n_loc_greedy``).

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
        if with_exact_match and kind in CHUNK_LOCALITY:
            unedited = [reference[cases[row].index][f"{kind}_greedy"] for row in rows]
            for row, score in zip(rows, same_greedy_answer(editor, samples, unedited, batch_size)):
                results[row][f"{kind}_same"] = score
    return results
