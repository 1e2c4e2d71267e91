"""Turn MMEdit-format records into LiveEdit training batches.

Each record ``(src, rephrase, alt, image, image_rephrase, loc, loc_ans, m_loc, m_loc_q, m_loc_a)``
gives up to five rows: the edit ``(image, src) -> alt``, its text rephrase ``(image, rephrase)``
and image rephrase ``(image_rephrase, src)`` (same target), an image locality question
``(m_loc, m_loc_q) -> m_loc_a`` and a text-only locality question ``loc -> loc_ans``. Rows with
an image go into one padded batch (``edited``); text-only rows into another (``text``), since
a processor call cannot mix the two. The collator also draws this batch's random choices (which
batch experts each row mixes in, which samples form the routing-loss pairs) from torch's global
RNG, so the Trainer's seeding and checkpointed RNG state make them reproducible.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hf_liveedit.data.prompts import format_prompt
from hf_liveedit.data.targets import CounterfactualTargets
from hf_liveedit.images import load_image

from .cache import row_key

__all__ = ["GENERALITY_KINDS", "LiveEditDataCollator", "RowKind"]


class RowKind(enum.IntEnum):
    """What a training row is, relative to its record's edit."""

    EDIT = 0
    GEN_TEXT = 1
    GEN_IMAGE = 2
    LOC_IMAGE = 3
    LOC_TEXT = 4


#: Rows that must be answered with the edit's target (they use their own expert).
GENERALITY_KINDS = (RowKind.EDIT, RowKind.GEN_TEXT, RowKind.GEN_IMAGE)


@dataclass
class _Row:
    kind: RowKind
    record: int
    image: Any
    prompt: str
    target: str


@dataclass
class LiveEditDataCollator:
    """Data collator for :class:`~hf_liveedit.trainers.LiveEditTrainer`.

    Args:
        model: the :class:`~hf_liveedit.LiveEditModel` (or its backbone adapter) whose
            processor and prompt format the batches use.
        task: prompt task for :func:`hf_liveedit.data.prompts.format_prompt` (``"vqa"`` or
            ``"caption"``); None uses each record's ``task`` field, else ``"vqa"``.
        image_root: folder that relative image paths in records are resolved against (records
            from :func:`hf_liveedit.data.with_images` already hold PIL images).
        fresh_targets: where fresh counterfactual targets come from (None: the records' own).
        fresh_target_rate: share of batches whose records all get a fresh target, drawn per
            batch (not per record) so that the other batches' rows stay the same and the
            hidden-state cache keeps serving them; in a batch with fresh targets, the edit and
            generality rows carry no cache key (they will not come again).

    A batch is a dict of tensors: ``edited`` / ``frozen`` / ``text`` processor inputs (with
    ``labels`` marking answers; ``frozen`` repeats the image-locality rows for the frozen
    model, ``text`` holds text-only rows and is absent when there are none), and
    ``row_kind`` / ``row_record`` / ``expert_mask`` (``[rows, records]``: the batch experts each
    ``edited`` row mixes in), ``text_expert_mask`` for ``text`` rows,
    ``pair_input`` / ``pair_edit`` (per record: the ``edited`` rows at the input and edit ends of
    the routing losses) and ``negative_record`` (per record: another record, the negative of
    ``l_sr1``; absent for one-record batches), and ``row_keys`` / ``frozen_keys`` / ``text_keys``
    (content keys of the rows, for :class:`~hf_liveedit.trainers.cache.HiddenStateCache`;
    None for rows not to keep).
    """

    model: Any
    task: str | None = None
    image_root: str | Path | None = None
    fresh_targets: CounterfactualTargets | None = None
    fresh_target_rate: float = 0.0

    def __post_init__(self) -> None:
        self.backbone = getattr(self.model, "adapter", self.model)
        if not 0 <= self.fresh_target_rate <= 1:
            raise ValueError(f"fresh_target_rate must be in [0, 1], got {self.fresh_target_rate}")
        if self.fresh_target_rate > 0 and self.fresh_targets is None:
            raise ValueError("fresh_target_rate > 0 needs fresh_targets")

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not records:
            raise ValueError("LiveEditDataCollator got an empty batch")
        fresh = self.fresh_target_rate > 0 and float(torch.rand(())) < self.fresh_target_rate
        if fresh:
            records = [{**record, "alt": self.fresh_targets.draw(record)} for record in records]
        rows = [row for index, record in enumerate(records) for row in self._rows(index, record)]
        rows.sort(key=lambda row: (row.kind, row.record))  # edit rows first, in record order
        image_rows = [row for row in rows if row.image is not None]
        text_rows = [row for row in rows if row.image is None]
        loc_rows = [row for row in image_rows if row.kind == RowKind.LOC_IMAGE]
        num_records = len(records)
        batch: dict[str, Any] = {
            "edited": self._inputs(image_rows),
            "row_keys": self._keys(image_rows, skip=GENERALITY_KINDS if fresh else ()),
            "row_kind": torch.tensor([int(row.kind) for row in image_rows]),
            "row_record": torch.tensor([row.record for row in image_rows]),
            "expert_mask": self._expert_mask(image_rows, num_records),
        }
        if loc_rows:
            batch["frozen"] = self._inputs(loc_rows)
            batch["frozen_keys"] = self._keys(loc_rows)
        if text_rows:
            batch["text"] = self._inputs(text_rows)
            batch["text_keys"] = self._keys(text_rows)
            batch["text_expert_mask"] = self._expert_mask(text_rows, num_records)
        batch["pair_input"], batch["pair_edit"] = self._pairs(image_rows, num_records)
        if num_records > 1:
            offset = torch.randint(1, num_records, (num_records,))
            batch["negative_record"] = (torch.arange(num_records) + offset) % num_records
        return batch

    # --- rows ------------------------------------------------------------------------------
    def _rows(self, index: int, record: Mapping[str, Any]) -> list[_Row]:
        task = self.task or record.get("task") or "vqa"

        def ask(question: str) -> str:
            return format_prompt(question, task)

        def present(*keys: str) -> bool:
            return all(record.get(key) not in (None, "") for key in keys)

        if not present("src", "alt", "image"):
            raise ValueError(f"record {index} lacks one of src, alt, image: {dict(record)!r:.200}")
        image, target = self._image(record["image"]), record["alt"]
        rows = [_Row(RowKind.EDIT, index, image, ask(record["src"]), target)]
        if present("rephrase"):
            rows.append(_Row(RowKind.GEN_TEXT, index, image, ask(record["rephrase"]), target))
        if present("image_rephrase"):
            rephrase_image = self._image(record["image_rephrase"])
            rows.append(_Row(RowKind.GEN_IMAGE, index, rephrase_image, ask(record["src"]), target))
        if present("m_loc", "m_loc_q", "m_loc_a"):
            loc_image = self._image(record["m_loc"])
            rows.append(
                _Row(RowKind.LOC_IMAGE, index, loc_image, ask(record["m_loc_q"]), record["m_loc_a"])
            )
        if present("loc", "loc_ans"):
            # Text locality questions are asked as they are (MMEdit's "nq question: ..." form).
            rows.append(_Row(RowKind.LOC_TEXT, index, None, record["loc"], record["loc_ans"]))
        return rows

    def _image(self, value: Any) -> Any:
        if isinstance(value, (str, Path)) and self.image_root is not None:
            value = Path(self.image_root) / value
        return load_image(value)

    def _inputs(self, rows: list[_Row]) -> dict[str, torch.Tensor]:
        images = [row.image for row in rows] if rows[0].image is not None else None
        inputs = self.backbone.build_inputs(
            images, [row.prompt for row in rows], [row.target for row in rows]
        )
        return dict(inputs)

    @staticmethod
    def _keys(rows: list[_Row], skip: Sequence[RowKind] = ()) -> list[str | None]:
        """Cache keys of the rows (None for rows of the kinds in ``skip``)."""
        return [
            None if row.kind in skip else row_key(row.image, row.prompt, row.target) for row in rows
        ]

    # --- random choices ----------------------------------------------------------------------
    @staticmethod
    def _expert_mask(rows: list[_Row], num_records: int) -> torch.Tensor:
        """Generality rows: own expert plus a random subset of the others; locality: others only."""
        mask = torch.zeros(len(rows), num_records, dtype=torch.bool)
        for index, row in enumerate(rows):
            others = torch.tensor(
                [r for r in range(num_records) if r != row.record], dtype=torch.long
            )
            count = int(torch.randint(0, num_records, ()))  # 0 .. num_records - 1 others
            mask[index, others[torch.randperm(len(others))[:count]]] = True
            if row.kind in GENERALITY_KINDS:
                mask[index, row.record] = True
        return mask

    @staticmethod
    def _pairs(rows: list[_Row], num_records: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per record, two generality-domain rows drawn independently: input end and edit end."""
        ends = []
        for _ in range(2):
            chosen = []
            for record in range(num_records):
                candidates = [
                    index
                    for index, row in enumerate(rows)
                    if row.record == record and row.kind in GENERALITY_KINDS
                ]
                chosen.append(candidates[int(torch.randint(0, len(candidates), ()))])
            ends.append(torch.tensor(chosen))
        return ends[0], ends[1]
