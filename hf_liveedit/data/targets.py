"""Counterfactual edit targets drawn afresh, so that a generator learns to write any target.

A benchmark record carries one counterfactual target (``alt``) of its relation. Trained on those
alone, a generator sees each record with the same target in every epoch, a few hundred distinct
targets in all. :class:`CounterfactualTargets` draws another value of the record's relation
instead (any value the relation takes in the data, never the record's own true answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from hf_liveedit.data.benchmark.facts import normalize

__all__ = ["CounterfactualTargets"]

#: Columns a record needs for a fresh target: its relation and its true answer.
REQUIRED_COLUMNS = ("relation", "answer")


class CounterfactualTargets:
    """Per relation, the values it takes in some records (their true answers and targets).

    Args:
        records: records with ``relation``, ``answer`` and ``alt`` (the packaged benchmark's
            columns), e.g. a :class:`datasets.Dataset` split.

    Raises:
        ValueError: the records lack ``relation`` or ``answer`` (MMEdit files such as E-VQA
            have neither), or a relation has fewer than two distinct values.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]]):
        columns = getattr(records, "column_names", None)
        missing = [c for c in REQUIRED_COLUMNS if columns is not None and c not in columns]
        if missing:
            raise ValueError(
                f"fresh counterfactual targets need the columns {list(REQUIRED_COLUMNS)}; the "
                f"data lacks {missing} (the packaged benchmark has them)"
            )
        rows = records.select_columns([*REQUIRED_COLUMNS, "alt"]) if columns else records
        values: dict[str, dict[str, str]] = {}
        for record in rows:
            if any(record.get(c) in (None, "") for c in REQUIRED_COLUMNS):
                raise ValueError(f"a record lacks relation or answer: {dict(record)!r:.200}")
            pool = values.setdefault(record["relation"], {})
            for value in (record["answer"], record.get("alt")):
                if value:
                    pool.setdefault(normalize(value), value)
        self.pools = {relation: sorted(pool.values()) for relation, pool in values.items()}
        poor = sorted(relation for relation, pool in self.pools.items() if len(pool) < 2)
        if poor:
            raise ValueError(f"relations with a single value cannot be redrawn: {poor}")

    def draw(
        self,
        record: Mapping[str, Any],
        avoid: Sequence[str] = (),
        generator: torch.Generator | None = None,
    ) -> str:
        """A value of the record's relation other than its true answer.

        Args:
            record: a record with ``relation`` and ``answer``.
            avoid: other values not to draw (e.g. the record's own target).
            generator: torch generator to draw with (default: torch's global one).

        Raises:
            KeyError: the record's relation is not in the pools.
            ValueError: nothing is left to draw.
        """
        pool = self.pools[record["relation"]]
        excluded = {normalize(value) for value in (record["answer"], *avoid)}
        options = [value for value in pool if normalize(value) not in excluded]
        if not options:
            raise ValueError(f"no value of {record['relation']} is left to draw")
        return options[int(torch.randint(len(options), (), generator=generator))]
