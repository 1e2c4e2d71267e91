"""Counterfactual edit targets drawn afresh, so that a generator learns to write any target.

A benchmark record carries one counterfactual target (``alt``) of its relation. Trained on those
alone, a generator sees each record with the same target in every epoch, a few hundred distinct
targets in all. :class:`CounterfactualTargets` draws another value of the record's relation
instead (any value the relation takes in the data, never the record's own true answer).

Values the relation takes are still a closed set: a generator trained on them writes those
strings and few others (the stage-5 default generator, step 2938, at 1,000 test-split edits:
95% of the targets that are a train-split value of their relation word for word, 37% of the
others; ``scripts/target_novelty.py``). With ``novel_rate`` a share
of the draws are *invented* values instead: the start of one value of the relation joined to the
end of another ("Ouaga" + "ssau"), a string no record has, in the style of the relation's values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from hf_liveedit.data.benchmark.facts import normalize

__all__ = ["CounterfactualTargets"]

#: Columns a record needs for a fresh target: its relation and its true answer.
REQUIRED_COLUMNS = ("relation", "answer")

#: Tries at joining two values into one that no record has before giving up.
MAX_INVENT_TRIES = 100


class CounterfactualTargets:
    """Per relation, the values it takes in some records (their true answers and targets).

    Args:
        records: records with ``relation``, ``answer`` and ``alt`` (the packaged benchmark's
            columns), e.g. a :class:`datasets.Dataset` split.
        novel_rate: share of draws that return an invented value (:meth:`invent`) instead of
            one the relation takes in ``records``.

    Raises:
        ValueError: the records lack ``relation`` or ``answer`` (MMEdit files such as E-VQA
            have neither), a relation has fewer than two distinct values, or ``novel_rate`` is
            not in [0, 1].
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], novel_rate: float = 0.0):
        if not (isinstance(novel_rate, (int, float)) and 0 <= novel_rate <= 1):
            raise ValueError(f"novel_rate must be in [0, 1], got {novel_rate!r}")
        self.novel_rate = float(novel_rate)
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

        With probability ``novel_rate`` the value is invented (:meth:`invent`).

        Args:
            record: a record with ``relation`` and ``answer``.
            avoid: other values not to draw (e.g. the record's own target).
            generator: torch generator to draw with (default: torch's global one).

        Raises:
            KeyError: the record's relation is not in the pools.
            ValueError: nothing is left to draw.
        """
        if self.novel_rate and float(torch.rand((), generator=generator)) < self.novel_rate:
            return self.invent(record, avoid, generator)
        pool = self.pools[record["relation"]]
        excluded = {normalize(value) for value in (record["answer"], *avoid)}
        options = [value for value in pool if normalize(value) not in excluded]
        if not options:
            raise ValueError(f"no value of {record['relation']} is left to draw")
        return options[_index(len(options), generator)]

    def invent(
        self,
        record: Mapping[str, Any],
        avoid: Sequence[str] = (),
        generator: torch.Generator | None = None,
    ) -> str:
        """A value no record has: the start of one value of the relation and the end of another.

        Each part keeps at least one character of its value and leaves at least one out, so
        "Abuja" and "Accra" can give "Abra" or "Accja", never either value.

        Args:
            record: a record with ``relation`` and ``answer``.
            avoid: other values not to return.
            generator: torch generator to draw with (default: torch's global one).

        Raises:
            KeyError: the record's relation is not in the pools.
            ValueError: no new value came out of ``MAX_INVENT_TRIES`` joins.
        """
        pool = self.pools[record["relation"]]
        taken = {normalize(value) for value in (*pool, record["answer"], *avoid)}
        joinable = [value for value in pool if len(value) > 1]
        for _ in range(MAX_INVENT_TRIES if len(joinable) > 1 else 0):
            head, tail = (joinable[_index(len(joinable), generator)] for _ in range(2))
            start = head[: 1 + _index(len(head) - 1, generator)]
            end = tail[1 + _index(len(tail) - 1, generator) :]
            value = " ".join((start + end).split())
            if len(value) > 1 and normalize(value) not in taken:
                return value
        raise ValueError(f"could not invent a new value of {record['relation']}")


def _index(size: int, generator: torch.Generator | None) -> int:
    """A uniform index in ``range(size)``."""
    return int(torch.randint(size, (), generator=generator))
