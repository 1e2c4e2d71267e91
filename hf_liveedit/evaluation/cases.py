"""One editing record as the five samples it is scored on (six with a neighbour: N-Loc).

A record of the MMEdit format (E-VQA, VLKEB, the packaged benchmark; rows of
:func:`hf_liveedit.data.load_mmedit` / :func:`hf_liveedit.data.load_benchmark` with images
opened) becomes an :class:`EditCase`. Prompts are formatted only by
:func:`hf_liveedit.data.format_prompt`, as everywhere else in the project; the text-locality
question (already ``"nq question: "``-prefixed by the loader) is asked as it is, as the MMEdit
authors do, and text-only.

The N-Loc sample depends on which edits a chunk applies, so the protocol attaches it per chunk
(:meth:`CaseSet.with_neighbour`): the record's own edit prompt asked on the edit image of a
neighbour (another entity of the same ``relation``), answered with the neighbour's true
``answer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from hf_liveedit.data.prompts import format_prompt

#: Record fields that define N-Loc neighbours (the packaged benchmark has them; E-VQA does not).
NEIGHBOUR_FIELDS: tuple[str, ...] = ("relation", "entity", "answer")


@dataclass(frozen=True)
class Sample:
    """One ``(image, prompt, target)`` triple; ``image`` is None for text-only samples."""

    image: Image.Image | None
    prompt: str
    target: str


@dataclass(frozen=True)
class EditCase:
    """A record's edit and its test samples (None where the record lacks the fields).

    Attributes:
        index: the record's row in its dataset.
        edit: ``(v_e, p_e, o_e)``; also the Rel sample.
        t_gen: ``(v_e, rephrased prompt, o_e)``.
        m_gen: ``(rephrased image, p_e, o_e)``.
        t_loc: ``(None, unrelated question, its answer)``.
        m_loc: ``(unrelated image, its question, its answer)``.
        n_loc: ``(neighbour's edit image, p_e, neighbour's true answer)``; attached per chunk
            by the protocol (:meth:`CaseSet.with_neighbour`), None otherwise.
        m_gen_source: where the M-Gen picture comes from (the record's
            ``image_rephrase_source``, e.g. ``"flagpy"``), for results by source; None if unknown.
    """

    index: int
    edit: Sample
    t_gen: Sample | None
    m_gen: Sample | None
    t_loc: Sample | None
    m_loc: Sample | None
    n_loc: Sample | None = None
    m_gen_source: str | None = None

    def sample(self, kind: str) -> Sample | None:
        """The sample scored by metric ``kind`` (``rel``, ``t_gen``, ``m_gen``, ``t_loc``, ``m_loc``, ``n_loc``)."""
        return self.edit if kind == "rel" else getattr(self, kind)


def case_from_row(row: Mapping[str, Any], index: int) -> EditCase:
    """Build the samples of one loaded record.

    Args:
        row: a row of a dataset from :func:`hf_liveedit.data.load_mmedit` or
            :func:`hf_liveedit.data.load_benchmark` with images opened (PIL images in
            ``image``, ``image_rephrase``, ``m_loc``; empty fields are None or "").
        index: the row's index.

    Returns:
        The record's :class:`EditCase`.
    """
    task = row.get("task") or "vqa"
    prompt = format_prompt(row["src"], task)
    target = row["alt"]
    image = row["image"]
    rephrase = row.get("rephrase")
    image_rephrase = row.get("image_rephrase")
    loc, loc_ans = row.get("loc"), row.get("loc_ans")
    m_loc, m_loc_q, m_loc_a = row.get("m_loc"), row.get("m_loc_q"), row.get("m_loc_a")
    return EditCase(
        index=index,
        edit=Sample(image, prompt, target),
        t_gen=Sample(image, format_prompt(rephrase, task), target) if rephrase else None,
        m_gen=Sample(image_rephrase, prompt, target) if image_rephrase else None,
        t_loc=Sample(None, loc, loc_ans) if loc and loc_ans else None,
        m_loc=(
            Sample(m_loc, format_prompt(m_loc_q, task), m_loc_a)
            if m_loc and m_loc_q and m_loc_a
            else None
        ),
        m_gen_source=row.get("image_rephrase_source") or None,
    )


class CaseSet:
    """Lazy :class:`EditCase` view of a dataset: images are opened when a case is built.

    Args:
        dataset: a dataset with opened images (see :func:`hf_liveedit.data.with_images`), or
            any sequence of row mappings.
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EditCase:
        return case_from_row(self.dataset[int(index)], int(index))

    def facts(self) -> list[tuple[str, str] | None]:
        """Per record, ``(relation, entity)``; None where it lacks one of :data:`NEIGHBOUR_FIELDS`.

        A :class:`datasets.Dataset` is read by column, without opening any image.
        """
        columns = _plain_columns(self.dataset, NEIGHBOUR_FIELDS)
        return [
            (relation, entity) if relation and entity and answer else None
            for relation, entity, answer in zip(*(columns[name] for name in NEIGHBOUR_FIELDS))
        ]

    def with_neighbour(self, case: EditCase, neighbour: int | None) -> EditCase:
        """``case`` with its N-Loc sample on record ``neighbour`` (unchanged when None).

        Args:
            case: a case of this set.
            neighbour: the index of the neighbour record (see
                :class:`~hf_liveedit.evaluation.protocol.Neighbours`).

        Returns:
            The case with ``n_loc = (neighbour's edit image, case's edit prompt, neighbour's
            answer)``.
        """
        if neighbour is None:
            return case
        row = self.dataset[int(neighbour)]
        return replace(case, n_loc=Sample(row["image"], case.edit.prompt, row["answer"]))


def _plain_columns(dataset: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """Columns ``names`` of a dataset (None where it lacks one), images left unopened."""
    if hasattr(dataset, "with_format"):  # a datasets.Dataset: drop the image-opening transform
        present = [name for name in names if name in dataset.column_names]
        table = dataset.with_format(None).select_columns(present)[:] if present else {}
    else:
        rows = [dataset[index] for index in range(len(dataset))]
        table = {name: [row.get(name) for row in rows] for name in names}
    return {name: table.get(name) or [None] * len(dataset) for name in names}
