"""The sequential (lifelong) editing protocol.

For each number of edits N: split the (ordered) records into consecutive chunks of N; for each
chunk, start from the unedited model, apply its N edits one after another, then score its
records; report the mean and spread over chunks. An incomplete last chunk is dropped, so every
chunk has exactly N edits.

Where compute is short, a :class:`Plan` runs a documented subset: at most ``max_chunks[N]``
chunks of size N (evenly spaced over the record order), and at most ``score_limit[N]`` scored
records per chunk (a seeded sample of the chunk; every edit of the chunk is still applied).

Neighbourhood locality (N-Loc) asks each scored record's edit prompt on the edit image of a
neighbour: another entity of the same relation whose edit the chunk did not apply
(:class:`Neighbours`). The neighbour depends on the chunk, so its unedited reference is computed
per chunk, right after the reset and before the chunk's edits.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_liveedit.evaluation.cases import CaseSet, EditCase
from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.evaluation.metrics import EXACT_MATCH_METRICS, METRICS, mean
from hf_liveedit.evaluation.scoring import CHUNK_LOCALITY

DEFAULT_SIZES: tuple[int, ...] = (1, 10, 100, 1000)
#: Records whose locality references are computed together (their images are held meanwhile).
REFERENCE_BLOCK = 64


@dataclass
class Plan:
    """What one editor runs.

    Attributes:
        sizes: numbers of sequential edits N.
        max_chunks: per N, the most chunks to run (all when absent).
        score_limit: per N, the most records scored per chunk (all when absent).
        seed: seed of the scored-record samples and of the N-Loc neighbour choice.
        batch_size: samples per forward pass when scoring.
        exact_match: also score greedy-generation exact match.
    """

    sizes: tuple[int, ...] = DEFAULT_SIZES
    max_chunks: dict[int, int] = field(default_factory=dict)
    score_limit: dict[int, int] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    exact_match: bool = True

    def chunks(self, order: Sequence[int], size: int) -> list[list[int]]:
        """The chunks of ``size`` record indices run for N = ``size``."""
        return plan_chunks(order, size, self.max_chunks.get(size))

    def scored(self, chunk: Sequence[int], size: int, chunk_id: int) -> list[int]:
        """The records of ``chunk`` that are scored (a seeded sample past ``score_limit``)."""
        limit = self.score_limit.get(size)
        if limit is None or len(chunk) <= limit:
            return list(chunk)
        rng = random.Random(f"{self.seed}-{size}-{chunk_id}")
        return sorted(rng.sample(list(chunk), limit), key=list(chunk).index)


class Neighbours:
    """Choice of each record's N-Loc neighbour: same relation, other entity, not edited.

    Args:
        facts: per record, ``(relation, entity)`` or None (see :meth:`CaseSet.facts`); records
            with None neither get nor serve as a neighbour.
        seed: the plan's seed.
    """

    def __init__(self, facts: Sequence[tuple[str, str] | None], seed: int = 0):
        self.facts = list(facts)
        self.seed = seed
        self.by_relation: dict[str, list[int]] = defaultdict(list)
        for index, fact in enumerate(self.facts):
            if fact is not None:
                self.by_relation[fact[0]].append(index)

    def candidates(self, index: int) -> list[int]:
        """Records of ``index``'s relation with another entity, in the record's seeded order."""
        fact = self.facts[index]
        if fact is None:
            return []
        relation, entity = fact
        found = [other for other in self.by_relation[relation] if self.facts[other][1] != entity]
        random.Random(f"{self.seed}-n_loc-{index}").shuffle(found)
        return found

    def choose(self, index: int, edited: AbstractSet[int]) -> int | None:
        """The first candidate of ``index`` not in ``edited`` (a chunk's records); None if none."""
        return next((other for other in self.candidates(index) if other not in edited), None)


def record_neighbours(cases: CaseSet, seed: int) -> Neighbours | None:
    """The neighbour choice over a :class:`CaseSet` (None for other case sequences: no N-Loc)."""
    return Neighbours(cases.facts(), seed) if isinstance(cases, CaseSet) else None


def prepare_chunk(
    editor: Editor,
    cases: CaseSet,
    scored: Sequence[int],
    chunk: Sequence[int],
    neighbours: Neighbours | None,
    reference: dict[int, dict[str, list[int]]],
    plan: Plan,
) -> tuple[list[EditCase], dict[int, dict[str, list[int]]], list[int | None]]:
    """A chunk's scored cases with their N-Loc samples, and the reference extended to them.

    Call it with the editor reset, before the chunk's edits: the N-Loc references (argmax
    tokens, and with ``plan.exact_match`` the greedy answer) are the unedited model's.

    Args:
        editor: the editor, reset.
        cases: the records.
        scored: indices of the chunk's scored records.
        chunk: indices of the chunk's edits (never a neighbour).
        neighbours: the neighbour choice (None: no N-Loc).
        reference: the T-Loc / M-Loc references of at least the scored records.
        plan: batch size and exact-match setting.

    Returns:
        ``(cases, reference, neighbour index or None per scored record)``.
    """
    edited = set(chunk)
    picked = [neighbours.choose(i, edited) if neighbours else None for i in scored]
    prepared = [
        cases.with_neighbour(cases[i], j) if j is not None else cases[i]
        for i, j in zip(scored, picked)
    ]
    local: dict[int, dict[str, list[int]]] = {}
    with_n_loc = [case for case in prepared if case.n_loc is not None]
    if with_n_loc:
        local = editor.reference(with_n_loc, plan.batch_size, CHUNK_LOCALITY, plan.exact_match)
    merged = {i: {**reference.get(i, {}), **local.get(i, {})} for i in scored}
    return prepared, merged, picked


def plan_chunks(order: Sequence[int], size: int, max_chunks: int | None = None) -> list[list[int]]:
    """Consecutive full chunks of ``size`` over ``order``; an evenly spaced subset past ``max_chunks``.

    Args:
        order: record indices in protocol order.
        size: edits per chunk.
        max_chunks: the most chunks to keep (None: all).

    Returns:
        The chunks, each a list of ``size`` record indices.
    """
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    count = len(order) // size
    chunks = [list(order[i * size : (i + 1) * size]) for i in range(count)]
    if max_chunks is None or max_chunks >= count:
        return chunks
    return [chunks[(i * count) // max_chunks] for i in range(max_chunks)]


def record_order(num_records: int, shuffle_seed: int | None) -> list[int]:
    """Protocol order of the records: file order, or a seeded shuffle of it."""
    order = list(range(num_records))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    return order


class ResultsWriter:
    """Append-only JSON-lines results: one line per chunk, flushed to disk at once.

    Args:
        directory: results folder (created); chunks go to ``chunks.jsonl``.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "chunks.jsonl"

    def done(self) -> set[tuple[str, int, int]]:
        """``(editor, N, chunk)`` of the chunks already written (for ``--resume``)."""
        return {(r["editor"], r["num_edits"], r["chunk"]) for r in read_chunks(self.path)}

    def append(self, result: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_chunks(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Chunk results of a ``chunks.jsonl`` file (none if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def chunk_metrics(scores: Iterable[dict[str, float | None]]) -> dict[str, float]:
    """Mean of each metric over a chunk's scored records (records lacking a sample skipped)."""
    scores = list(scores)
    out = {}
    for metric in METRICS + EXACT_MATCH_METRICS:
        values = [row[metric] for row in scores if row.get(metric) is not None]
        if values:
            out[metric] = mean(values)
    return out


def run_editor(
    key: str,
    editor: Editor,
    cases: CaseSet,
    order: Sequence[int],
    plan: Plan,
    writer: ResultsWriter,
    skip: AbstractSet[tuple[str, int, int]] = frozenset(),
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Run the protocol for one editor and write each chunk's result as soon as it is scored.

    The editor is reset before each chunk and after the last one. The unedited model's argmax
    tokens on the locality samples (the T-Loc / M-Loc references) are computed once, in the
    reset state, for every record the plan scores; the N-Loc references per chunk, after its
    reset and before its edits (see :func:`prepare_chunk`; counted in ``score_seconds``).

    Args:
        key: the editor's key in the results (e.g. ``"ft-l"``).
        editor: the editor.
        cases: the records.
        order: record indices in protocol order.
        plan: sizes, chunk and scoring limits.
        writer: where chunk results go.
        skip: ``(key, N, chunk)`` already done (resume).
        on_step: called with a count after each edit (1) and each scored chunk (its records).
    """
    jobs = [
        (size, chunk_id, chunk, plan.scored(chunk, size, chunk_id))
        for size in plan.sizes
        for chunk_id, chunk in enumerate(plan.chunks(order, size))
        if (key, size, chunk_id) not in skip
    ]
    if not jobs:
        return
    editor.reset()
    neighbours = record_neighbours(cases, plan.seed)
    to_score = sorted({index for job in jobs for index in job[3]})
    reference: dict[int, dict[str, list[int]]] = {}
    for start in range(0, len(to_score), REFERENCE_BLOCK):  # bounded memory: images load lazily
        block = [cases[i] for i in to_score[start : start + REFERENCE_BLOCK]]
        reference.update(editor.reference(block, plan.batch_size))
    for size, chunk_id, chunk, scored in jobs:
        editor.reset()
        referenced = time.perf_counter()
        prepared, chunk_reference, picked = prepare_chunk(
            editor, cases, scored, chunk, neighbours, reference, plan
        )
        started = time.perf_counter()
        cached = {case.index: case for case in prepared}
        for index in chunk:
            editor.edit((cached[index] if index in cached else cases[index]).edit)
            if on_step:
                on_step(1)
        edited = time.perf_counter()
        scores = editor.score(prepared, chunk_reference, plan.batch_size, plan.exact_match)
        sources = {case.index: case.m_gen_source for case in prepared if case.m_gen_source}
        for record in scores:  # for results by picture source (report.by_source_table)
            if record["index"] in sources:
                record["m_gen_source"] = sources[record["index"]]
        diagnostics = editor.diagnostics(prepared, chunk)
        finished = time.perf_counter()
        if on_step:
            on_step(len(scored))
        extra = {"diagnostics": diagnostics} if diagnostics is not None else {}
        writer.append(
            {
                "editor": key,
                "name": editor.name,
                "num_edits": size,
                "chunk": chunk_id,
                "edited": list(chunk),
                "scored": list(scored),
                "neighbours": picked,
                "metrics": chunk_metrics(scores),
                "records": scores,
                "edit_seconds": round(edited - started, 3),
                "score_seconds": round(finished - edited + started - referenced, 3),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **extra,
            }
        )
    editor.reset()


def run_protocol(
    editors: dict[str, Callable[[], Editor]],
    cases: CaseSet,
    order: Sequence[int],
    plans: dict[str, Plan],
    writer: ResultsWriter,
    resume: bool = False,
    progress: bool = True,
) -> None:
    """Run every editor through the protocol, one editor at a time.

    Each editor is built right before its run and closed right after, so that editors sharing
    one base model never overlap.

    Args:
        editors: key -> factory building the editor.
        cases: the records.
        order: record indices in protocol order.
        plans: key -> the editor's plan.
        writer: where chunk results go.
        resume: skip chunks already in the writer's file.
        progress: show a progress bar per editor (edits + scored records, with an ETA).
    """
    skip = writer.done() if resume else set()
    for key, factory in editors.items():
        plan = plans[key]
        total = sum(
            len(chunk) + len(plan.scored(chunk, size, chunk_id))
            for size in plan.sizes
            for chunk_id, chunk in enumerate(plan.chunks(order, size))
            if (key, size, chunk_id) not in skip
        )
        with tqdm(total=total, desc=key, unit="step", disable=not progress) as bar:
            editor = factory()
            try:
                run_editor(key, editor, cases, order, plan, writer, skip, bar.update)
            finally:
                editor.close()


def estimate_editor(
    editor: Editor, cases: CaseSet, order: Sequence[int], plan: Plan
) -> dict[str, float]:
    """Time one edit and the scoring of one record, and project the plan's run time.

    The editor is reset before and after. Scoring is timed on a batch of one, so the projection
    over-estimates batched scoring; edits that slow down as edits accumulate (larger codebooks,
    more experts, a longer TP memory) make it under-estimate large N.

    Returns:
        Seconds per edit / scored record / reference record / N-Loc reference (one per scored
        record), the plan's counts, and ``total``.
    """
    case = cases[order[0]]
    neighbours = record_neighbours(cases, plan.seed)
    single = Plan(seed=plan.seed, batch_size=1, exact_match=plan.exact_match)
    editor.reset()
    start = time.perf_counter()
    reference = editor.reference([case], 1)
    referenced = time.perf_counter()
    prepared, reference, _ = prepare_chunk(
        editor, cases, [order[0]], [order[0]], neighbours, reference, single
    )
    neighboured = time.perf_counter()
    editor.edit(case.edit)
    edited = time.perf_counter()
    editor.score(prepared, reference, 1, plan.exact_match)
    scored = time.perf_counter()
    editor.reset()
    chunks = [
        (chunk, plan.scored(chunk, size, i))
        for size in plan.sizes
        for i, chunk in enumerate(plan.chunks(order, size))
    ]
    counts = {
        "edits": sum(len(chunk) for chunk, _ in chunks),
        "scored": sum(len(picked) for _, picked in chunks),
        "references": len({index for _, picked in chunks for index in picked}),
    }
    seconds = {
        "edit": edited - neighboured,
        "score": scored - edited,
        "reference": referenced - start,
        "n_loc_reference": neighboured - referenced,
    }
    total = (
        counts["edits"] * seconds["edit"]
        + counts["scored"] * (seconds["score"] + seconds["n_loc_reference"])
        + counts["references"] * seconds["reference"]
    )
    return {**{f"{k}_seconds": v for k, v in seconds.items()}, **counts, "total_seconds": total}


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A plan as JSON-friendly data (for ``run.json``)."""
    data = asdict(plan)
    data["max_chunks"] = {str(size): count for size, count in plan.max_chunks.items()}
    data["score_limit"] = {str(size): count for size, count in plan.score_limit.items()}
    return data
