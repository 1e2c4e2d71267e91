"""The sequential protocol (chunking, resets, scoring order), results files and the report."""

from __future__ import annotations

import json

import pytest

from hf_liveedit.evaluation.cases import EditCase, Sample
from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.evaluation.protocol import (
    Plan,
    ResultsWriter,
    plan_chunks,
    read_chunks,
    record_order,
    run_protocol,
)
from hf_liveedit.evaluation.report import aggregate, markdown_table, write_report


class FakeCases:
    """Cases whose edit prompt is the record index; no images, no model."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> EditCase:
        sample = Sample(None, str(index), "t")
        return EditCase(index, sample, None, None, None, None)


class FakeEditor(Editor):
    """Logs every call; scores a record 1.0 iff its edit is among the edits applied since reset."""

    name = "Fake"

    def __init__(self, log: list):
        self.log = log
        self.applied: list[int] = []

    def edit(self, sample: Sample) -> None:
        self.applied.append(int(sample.prompt))
        self.log.append(("edit", int(sample.prompt)))

    def reset(self) -> None:
        self.applied = []
        self.log.append(("reset",))

    def close(self) -> None:
        self.log.append(("close",))

    def reference(self, cases, batch_size=16):
        self.log.append(("reference", [case.index for case in cases]))
        return {}

    def score(self, cases, reference, batch_size=16, with_exact_match=True):
        self.log.append(("score", [case.index for case in cases], list(self.applied)))
        return [{"index": c.index, "rel": float(c.index in self.applied)} for c in cases]


def test_plan_chunks_keeps_full_chunks_and_spreads_a_subset():
    order = list(range(25))
    assert plan_chunks(order, 10) == [list(range(10)), list(range(10, 20))]
    assert plan_chunks(order, 1, max_chunks=3) == [[0], [8], [16]]
    assert plan_chunks(order, 30) == []
    with pytest.raises(ValueError):
        plan_chunks(order, 0)


def test_record_order_is_a_seeded_permutation():
    assert record_order(5, None) == [0, 1, 2, 3, 4]
    shuffled = record_order(50, 0)
    assert sorted(shuffled) == list(range(50)) and shuffled != list(range(50))
    assert record_order(50, 0) == shuffled


def test_scored_sample_is_seeded_and_limited():
    plan = Plan(score_limit={10: 3})
    chunk = list(range(10, 20))
    picked = plan.scored(chunk, 10, 0)
    assert len(picked) == 3 and set(picked) <= set(chunk)
    assert plan.scored(chunk, 10, 0) == picked
    assert Plan().scored(chunk, 10, 0) == chunk
    assert plan.scored(chunk, 100, 0) == chunk  # no limit for that size


def test_protocol_resets_before_each_chunk_and_scores_after_all_its_edits(tmp_path):
    log: list = []
    writer = ResultsWriter(tmp_path)
    plan = Plan(sizes=(1, 3), max_chunks={1: 2})
    order = [4, 2, 0, 1, 3, 5, 6]
    run_protocol(
        {"fake": lambda: FakeEditor(log)},
        FakeCases(7),
        order,
        {"fake": plan},
        writer,
        progress=False,
    )

    chunks = [[4], [1]] + [[4, 2, 0], [1, 3, 5]]  # N=1: chunks 0 and 3 of 7; N=3: two full
    assert log[0] == ("reset",)
    assert log[1] == ("reference", [0, 1, 2, 3, 4, 5])
    position = 2
    for chunk in chunks:
        assert log[position] == ("reset",)
        assert log[position + 1 : position + 1 + len(chunk)] == [("edit", i) for i in chunk]
        assert log[position + 1 + len(chunk)] == ("score", chunk, chunk)
        position += len(chunk) + 2
    assert log[position:] == [("reset",), ("close",)]

    results = read_chunks(tmp_path / "chunks.jsonl")
    assert [(r["num_edits"], r["chunk"], r["edited"]) for r in results] == [
        (1, 0, [4]),
        (1, 1, [1]),
        (3, 0, [4, 2, 0]),
        (3, 1, [1, 3, 5]),
    ]
    assert all(r["metrics"] == {"rel": 1.0} for r in results)

    # Resume skips what is done; nothing is left here.
    log.clear()
    run_protocol(
        {"fake": lambda: FakeEditor(log)},
        FakeCases(7),
        order,
        {"fake": plan},
        writer,
        resume=True,
        progress=False,
    )
    assert log == [("close",)]


def synthetic_chunks() -> list[dict]:
    def chunk(editor, size, index, value):
        metrics = {m: value for m in ("rel", "t_gen", "m_gen", "t_loc", "m_loc")}
        return {
            "editor": editor,
            "name": editor.upper(),
            "num_edits": size,
            "chunk": index,
            "edited": list(range(size)),
            "scored": list(range(size)),
            "metrics": metrics,
            "edit_seconds": 1.0,
            "score_seconds": 2.0,
        }

    return [
        chunk("a", 1, 0, 1.0),
        chunk("a", 1, 1, 0.5),
        chunk("a", 10, 0, 0.8),
        chunk("b", 1, 0, 0.2),
    ]


def test_aggregate_gives_mean_and_std_over_chunks():
    summary = aggregate(synthetic_chunks())
    row = summary["a"]["sizes"]["1"]
    assert row["chunks"] == 2 and row["rel"]["mean"] == 0.75
    assert row["rel"]["std"] == pytest.approx(0.3535, abs=1e-3)
    assert row["avg"]["mean"] == 0.75
    assert summary["a"]["sizes"]["10"]["rel"]["std"] == 0.0
    table = markdown_table(summary, exact_match=False)
    assert "| A | 1 | 2 | 75.00 ± 35.36 |" in table and "| B | 1 | 1 | 20.00 |" in table
    assert "| avg | N-Loc |" in table and table.splitlines()[-1].endswith("| 20.00 | - |")


def test_report_command_writes_table_plot_and_summary(tmp_path):
    from hf_liveedit.cli import main

    (tmp_path / "chunks.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in synthetic_chunks())
    )
    (tmp_path / "run.json").write_text(json.dumps({"command": "hf-liveedit evaluate run x"}))
    assert main(["evaluate", "report", str(tmp_path)]) == 0
    page = (tmp_path / "results.md").read_text()
    assert "hf-liveedit evaluate run x" in page and "| A | 10 | 1 | 80.00 |" in page
    assert (tmp_path / "metrics_vs_edits.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["results"]["b"]["name"] == "B"
    assert write_report(tmp_path)["table"].is_file()


def test_fresh_targets_for_validation_are_seeded_and_never_a_known_answer():
    from datasets import Dataset

    from hf_liveedit.commands import UsageError
    from hf_liveedit.commands.evaluate import with_fresh_targets

    capitals = ["Paris", "Rome", "Oslo", "Lyon", "Bern", "Riga"]
    records = [
        {"src": f"q{i}", "relation": "capital", "answer": capitals[i], "alt": capitals[i - 1]}
        for i in range(len(capitals))
    ]
    dataset = Dataset.from_list(records)
    fresh = with_fresh_targets(dataset, 3)
    assert fresh["src"] == dataset["src"] and fresh["answer"] == dataset["answer"]
    for record, target in zip(records, fresh["alt"]):
        assert target in capitals and target not in (record["answer"], record["alt"])
    assert with_fresh_targets(dataset, 3)["alt"] == fresh["alt"]
    assert any(with_fresh_targets(dataset, seed)["alt"] != fresh["alt"] for seed in range(4, 8))
    with pytest.raises(UsageError, match="--fresh-targets"):
        with_fresh_targets(dataset.remove_columns("relation"), 0)
    invented = with_fresh_targets(dataset, 3, novel=True)
    assert invented["alt"] == with_fresh_targets(dataset, 3, novel=True)["alt"]
    assert not set(invented["alt"]) & set(capitals)
