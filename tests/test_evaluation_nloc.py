"""Neighbourhood locality (N-Loc): neighbour choice, per-chunk references, scoring, report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import make_liveedit, rig_routing
from test_evaluation_protocol import synthetic_chunks

from hf_liveedit.data.mmedit import normalize_record, records_to_dataset, with_images
from hf_liveedit.data.prompts import format_prompt
from hf_liveedit.evaluation import METRIC_PATH
from hf_liveedit.evaluation.cases import CaseSet, EditCase, Sample
from hf_liveedit.evaluation.editors import LiveEditEditor
from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.evaluation.metrics import METRIC_NAMES, METRICS, PAPER_METRICS, same_answer
from hf_liveedit.evaluation.protocol import (
    Neighbours,
    Plan,
    ResultsWriter,
    estimate_editor,
    read_chunks,
    record_order,
    run_protocol,
)
from hf_liveedit.evaluation.report import (
    aggregate,
    diagnostics_table,
    markdown_table,
    write_report,
)
from hf_liveedit.evaluation.scoring import locality_reference, score_cases
from hf_liveedit.testing.tiny_models import tiny_image

# --- a fake model whose answers and edit side effects are known --------------------------------

#: What the fake model answers for each flag image, whatever the question.
BASE_ANSWERS = {"fr": "paris", "ad": "andorra", "es": "madrid", "pe": "lima"}


class CharTokenizer:
    """One token per character (id = ``ord``); 0 is padding."""

    pad_token_id = 0

    def decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return "".join(chr(int(token)) for token in tokens if int(token) != 0)


class TableEditor(Editor):
    """A model that answers from :data:`BASE_ANSWERS` by image; edits can leak onto other images.

    Teacher-forced, the argmax at answer position ``t`` is the ``t``-th character of the model's
    answer (0 past its end), whatever answer is fed; greedy generation yields the same
    characters. An edit ``(image, prompt, target)`` makes the answer to that input the target;
    for a prompt in ``leaky`` it also turns the first character of the answer to that prompt on
    every other image into ``target[0]`` (a router that fires on the neighbour's flag).

    Args:
        leaky: prompts whose edits leak.
        log: receives ``("reset",)``, ``("edit", prompt)``, ``("reference", kinds, indices,
            edits applied)`` and ``("score", indices)``.
    """

    name = "Table"

    def __init__(self, leaky=(), log: list | None = None):
        self.processor = SimpleNamespace(tokenizer=CharTokenizer())
        self.leaky = set(leaky)
        self.log = [] if log is None else log
        self.edits: dict[tuple[str, str], str] = {}

    def edit(self, sample: Sample) -> None:
        self.edits[(sample.image, sample.prompt)] = sample.target
        self.log.append(("edit", sample.prompt))

    def reset(self) -> None:
        self.edits = {}
        self.log.append(("reset",))

    def answer(self, image: str, prompt: str) -> str:
        if (image, prompt) in self.edits:
            return self.edits[(image, prompt)]
        text = BASE_ANSWERS[image]
        for (_, edited_prompt), target in self.edits.items():
            if edited_prompt == prompt and prompt in self.leaky:
                text = target[0] + text[1:]
        return text

    def build_inputs(self, images, prompts, targets=None):
        targets = list(targets) if targets is not None else [""] * len(prompts)
        width = 3 + max(len(target) for target in targets)
        ids = [[1, 1, 1] + [ord(c) for c in target] for target in targets]
        labels = [[-100] * 3 + [ord(c) for c in target] for target in targets]
        return {
            "input_ids": torch.tensor([[0] * (width - len(row)) + row for row in ids]),
            "labels": torch.tensor([[-100] * (width - len(row)) + row for row in labels]),
            "keys": list(zip(images, prompts)),
        }

    def logits(self, inputs, keep: int) -> torch.Tensor:
        labels = inputs["labels"]
        out = torch.zeros(len(labels), keep, 128)
        for row, (image, prompt) in enumerate(inputs["keys"]):
            length = int((labels[row] != -100).sum())
            answer = self.answer(image, prompt)
            for t in range(length):
                out[row, keep - length - 1 + t, ord(answer[t]) if t < len(answer) else 0] = 1.0
        return out

    def generate(self, inputs, max_new_tokens: int) -> torch.Tensor:
        rows = [
            [ord(c) for c in self.answer(image, prompt)[:max_new_tokens]]
            for image, prompt in inputs["keys"]
        ]
        return torch.tensor([row + [0] * (max_new_tokens - len(row)) for row in rows])

    def reference(self, cases, batch_size=16, kinds=None, with_exact_match=True):
        indices = [case.index for case in cases]
        self.log.append(("reference", kinds, indices, len(self.edits)))
        return super().reference(cases, batch_size, kinds, with_exact_match)

    def score(self, cases, reference, batch_size=16, with_exact_match=True):
        self.log.append(("score", [case.index for case in cases]))
        return super().score(cases, reference, batch_size, with_exact_match)


#: Four flags of one relation (France, Andorra, Spain, Peru), each with its own question.
FLAGS = [("France", "fr", "rome"), ("Andorra", "ad", "zagreb"), ("Spain", "es", "lima")]
FLAGS += [("Peru", "pe", "oslo")]


def flag_rows() -> list[dict]:
    return [
        {
            "src": f"Capital of the country of flag {i}?",
            "alt": alt,
            "image": image,
            "task": "vqa",
            "relation": "country/capital",
            "entity": entity,
            "answer": BASE_ANSWERS[image],
        }
        for i, (entity, image, alt) in enumerate(FLAGS)
    ]


def prompt_of(index: int) -> str:
    return format_prompt(f"Capital of the country of flag {index}?", "vqa")


# --- neighbour choice ---------------------------------------------------------------------------

FACTS = [
    ("country/capital", "France"),
    ("country/capital", "Andorra"),
    ("country/capital", "Spain"),
    ("country/currency", "Andorra"),
    None,
    ("country/capital", "France"),  # a second France record: never France's neighbour
    ("country/capital", "Peru"),
]


def test_neighbour_candidates_share_the_relation_and_not_the_entity():
    neighbours = Neighbours(FACTS, seed=0)
    assert sorted(neighbours.candidates(1)) == [0, 2, 5, 6]
    assert sorted(neighbours.candidates(0)) == [1, 2, 6]
    assert neighbours.candidates(3) == []  # alone in its relation
    assert neighbours.candidates(4) == []  # no relation / entity / answer


def test_neighbour_is_the_first_seeded_candidate_not_edited_in_the_chunk():
    neighbours = Neighbours(FACTS, seed=0)
    order = neighbours.candidates(1)
    assert neighbours.choose(1, {1}) == order[0]
    assert neighbours.choose(1, {1, order[0]}) == order[1]
    assert neighbours.choose(1, {1, *order[:3]}) == order[3]
    assert neighbours.choose(1, {1, 0, 2, 5, 6}) is None  # every candidate edited
    assert neighbours.choose(3, set()) is None and neighbours.choose(4, set()) is None
    for edited in ({1}, {1, 2}, {0, 1, 6}):
        assert neighbours.choose(1, edited) not in edited


def test_neighbour_choice_is_deterministic_and_seeded():
    facts = [("r", f"entity {i}") for i in range(40)]
    first = [Neighbours(facts, seed=3).choose(i, {i}) for i in range(40)]
    assert first == [Neighbours(facts, seed=3).choose(i, {i}) for i in range(40)]
    assert Neighbours(facts, seed=3).candidates(5) != Neighbours(facts, seed=4).candidates(5)
    assert Neighbours(facts, seed=3).candidates(5) != Neighbours(facts, seed=3).candidates(6)


# --- records -> N-Loc samples -------------------------------------------------------------------


def test_case_set_facts_and_neighbour_sample_from_row_mappings():
    rows = flag_rows() + [{"src": "What is this?", "alt": "a dog", "image": "fr"}]
    cases = CaseSet(rows)
    assert cases.facts() == [("country/capital", entity) for entity, _, _ in FLAGS] + [None]
    case = cases[1]
    assert case.n_loc is None and case.sample("n_loc") is None
    with_neighbour = cases.with_neighbour(case, 3)
    assert with_neighbour.n_loc == Sample("pe", prompt_of(1), "lima")
    assert with_neighbour.n_loc.prompt == case.edit.prompt  # the Rel sample's prompt
    assert with_neighbour.sample("n_loc") is with_neighbour.n_loc
    assert with_neighbour.edit == case.edit and cases.with_neighbour(case, None) is case


def test_case_set_facts_read_a_dataset_without_opening_images(tmp_path):
    records = [
        normalize_record({**row, "image": f"{i}.png"}, task="vqa", source="test")
        for i, row in enumerate(flag_rows())
    ]
    dataset = with_images(records_to_dataset(records), tmp_path)  # no image exists yet
    assert CaseSet(dataset).facts()[2] == ("country/capital", "Spain")
    tiny_image(3).save(tmp_path / "3.png")
    tiny_image(0).save(tmp_path / "0.png")
    case = CaseSet(dataset).with_neighbour(CaseSet(dataset)[0], 3)
    assert case.n_loc.target == "lima" and case.n_loc.prompt == prompt_of(0)
    assert case.n_loc.image.tobytes() == tiny_image(3).convert("RGB").tobytes()
    evqa = records_to_dataset(
        [normalize_record({"src": "q", "alt": "a", "image": "0.png"}, task="vqa", source="e")]
    )
    assert CaseSet(with_images(evqa, tmp_path)).facts() == [None]  # E-VQA: no N-Loc


# --- scoring ------------------------------------------------------------------------------------


def neighbour_case(index: int, neighbour: int) -> EditCase:
    return CaseSet(flag_rows()).with_neighbour(CaseSet(flag_rows())[index], neighbour)


def test_n_loc_scores_agreement_with_the_unedited_model_and_same_answer():
    # Andorra's edit leaks: its question on Spain's flag now starts with "z" ("zadrid").
    editor = TableEditor(leaky={prompt_of(1)})
    cases = [neighbour_case(1, 2), neighbour_case(0, 3)]
    reference = locality_reference(editor, cases)
    assert reference[1]["n_loc"] == [ord(c) for c in "madrid"]
    assert reference[1]["n_loc_greedy"] == [ord(c) for c in "madrid"]
    unedited = score_cases(editor, cases, reference)
    assert [row["n_loc"] for row in unedited] == [1.0, 1.0]
    assert [row["n_loc_same"] for row in unedited] == [1.0, 1.0]
    for case in cases:
        editor.edit(case.edit)
    scores = score_cases(editor, cases, reference)
    assert scores[0]["n_loc"] == pytest.approx(5 / 6)  # 'madrid' -> 'zadrid': 5 of 6 agree
    assert scores[0]["n_loc_same"] == 0.0
    assert scores[1]["n_loc"] == 1.0 and scores[1]["n_loc_same"] == 1.0  # France's edit is exact
    assert scores[0]["rel"] == 1.0 and scores[0]["rel_em"] == 1.0
    without_em = score_cases(editor, cases, reference, with_exact_match=False)
    assert "n_loc_same" not in without_em[0] and without_em[0]["n_loc"] == pytest.approx(5 / 6)


def test_n_loc_reference_kinds_and_cases_without_a_neighbour():
    editor = TableEditor()
    case = neighbour_case(1, 2)
    reference = locality_reference(editor, [case], kinds=("n_loc",), with_exact_match=False)
    assert reference == {1: {"n_loc": [ord(c) for c in "madrid"]}}
    plain = CaseSet(flag_rows())[0]
    scores = score_cases(editor, [plain], locality_reference(editor, [plain]))[0]
    assert scores["n_loc"] is None and "n_loc_same" not in scores


def test_same_answer_compares_strings_exactly():
    assert same_answer("Paris", "Paris") == 1.0
    assert same_answer("paris", "Paris") == 0.0  # no normalisation: any change counts
    assert same_answer("Paris ", "Paris") == 0.0


# --- the protocol -------------------------------------------------------------------------------


def test_protocol_references_n_loc_per_chunk_before_its_edits(tmp_path):
    log: list = []
    writer = ResultsWriter(tmp_path)
    plan = Plan(sizes=(1, 2))
    run_protocol(
        {"table": lambda: TableEditor({prompt_of(1)}, log)},
        CaseSet(flag_rows()),
        [0, 1, 2, 3],
        {"table": plan},
        writer,
        progress=False,
    )
    references = [entry for entry in log if entry[0] == "reference"]
    assert references[0][1:] == (None, [0, 1, 2, 3], 0)  # T-Loc / M-Loc, once
    # Then one N-Loc reference per chunk, right after its reset and before its edits.
    chunk_references = [i for i, entry in enumerate(log) if entry[0] == "reference"][1:]
    assert len(chunk_references) == 6
    for position in chunk_references:
        assert log[position - 1] == ("reset",) and log[position + 1][0] == "edit"
        assert log[position][1] == ("n_loc",) and log[position][3] == 0  # nothing edited yet

    results = read_chunks(tmp_path / "chunks.jsonl")
    facts = CaseSet(flag_rows()).facts()
    for result in results:
        assert len(result["neighbours"]) == len(result["scored"])
        for index, neighbour in zip(result["scored"], result["neighbours"]):
            assert neighbour not in result["edited"]
            assert facts[neighbour][0] == facts[index][0] and facts[neighbour][1] != facts[index][1]
            assert neighbour == Neighbours(facts, plan.seed).choose(index, set(result["edited"]))
        for row, neighbour in zip(result["records"], result["neighbours"]):
            if row["index"] == 1:  # the leaky edit: the first answer character changes
                length = len(BASE_ANSWERS[FLAGS[neighbour][1]])
                assert row["n_loc"] == pytest.approx((length - 1) / length)
                assert row["n_loc_same"] == 0.0
            else:
                assert row["n_loc"] == 1.0 and row["n_loc_same"] == 1.0
    by_chunk = {(r["num_edits"], r["chunk"]): r["metrics"] for r in results}
    assert by_chunk[(1, 0)]["n_loc"] == 1.0 and by_chunk[(1, 0)]["n_loc_same"] == 1.0
    assert by_chunk[(1, 1)]["n_loc_same"] == 0.0 and by_chunk[(2, 0)]["n_loc_same"] == 0.5
    assert set(by_chunk[(2, 1)]) >= {"rel", "rel_em", "n_loc", "n_loc_same"}


def test_protocol_without_exact_match_or_neighbours(tmp_path):
    log: list = []
    rows = [{**row, "relation": ""} for row in flag_rows()]  # no relation: no N-Loc sample
    run_protocol(
        {"table": lambda: TableEditor(log=log)},
        CaseSet(rows),
        [0, 1],
        {"table": Plan(sizes=(1,))},
        ResultsWriter(tmp_path / "none"),
        progress=False,
    )
    assert [entry[1] for entry in log if entry[0] == "reference"] == [None]  # no per-chunk one
    result = read_chunks(tmp_path / "none" / "chunks.jsonl")[0]
    assert result["neighbours"] == [None] and result["records"][0]["n_loc"] is None
    assert "n_loc" not in result["metrics"]

    run_protocol(
        {"table": lambda: TableEditor()},
        CaseSet(flag_rows()),
        [0, 1],
        {"table": Plan(sizes=(1,), exact_match=False)},
        ResultsWriter(tmp_path / "no-em"),
        progress=False,
    )
    metrics = read_chunks(tmp_path / "no-em" / "chunks.jsonl")[0]["metrics"]
    assert metrics == {"rel": 1.0, "n_loc": 1.0}


def test_estimate_times_the_n_loc_reference():
    estimate = estimate_editor(TableEditor(), CaseSet(flag_rows()), [0, 1, 2, 3], Plan(sizes=(2,)))
    assert estimate["n_loc_reference_seconds"] >= 0 and estimate["scored"] == 4


# --- LiveEdit routing diagnostics ---------------------------------------------------------------


def test_liveedit_diagnostics_report_routing_on_neighbours():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    editor = LiveEditEditor(liveedit, diagnostics=True)
    prompt = "What is the capital? The answer is:"
    cases = [
        EditCase(
            index=index,
            edit=Sample(tiny_image(index), prompt, "Lyon"),
            t_gen=None,
            m_gen=None,
            t_loc=None,
            m_loc=None,
            # Degenerate neighbour on the edit's own image: routes exactly like the Rel sample.
            n_loc=Sample(tiny_image(index), prompt, "Paris"),
        )
        for index in (7, 9)
    ]
    for case in cases:
        editor.edit(case.edit)
    stats = editor.diagnostics(cases, [7, 9])
    assert {"n_loc_any_kept", "n_loc_weight", "n_loc_kept"} <= set(stats)
    assert stats["n_loc_any_kept"] == 1.0
    total = stats["rel_own_weight"] + stats["rel_other_weight"]
    assert stats["n_loc_weight"] == pytest.approx(total)
    editor.close()


def test_liveedit_run_end_to_end_with_neighbours(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    records = []
    for i, (entity, _, _) in enumerate(FLAGS):
        tiny_image(i).save(images / f"{i}.png")
        row = {**flag_rows()[i], "image": f"{i}.png", "answer": f"city {entity}"}
        records.append(normalize_record(row, task="vqa", source="test"))
    cases = CaseSet(with_images(records_to_dataset(records), images))
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    writer = ResultsWriter(tmp_path / "results")
    run_protocol(
        {"liveedit": lambda: LiveEditEditor(liveedit, diagnostics=True)},
        cases,
        record_order(len(cases), 0),
        {"liveedit": Plan(sizes=(2,), max_chunks={2: 1}, batch_size=2)},
        writer,
        progress=False,
    )
    [result] = read_chunks(writer.path)  # one chunk: greedy generation is slow on CPU
    assert all(neighbour is not None for neighbour in result["neighbours"])
    assert 0.0 <= result["metrics"]["n_loc"] <= 1.0
    assert result["metrics"]["n_loc_same"] in (0.0, 0.5, 1.0)
    assert {"n_loc_any_kept", "n_loc_weight", "n_loc_kept"} <= set(result["diagnostics"])
    paths = write_report(writer.directory)
    page = paths["table"].read_text()
    assert "| N-Loc |" in page and "N-Loc any kept" in page and "N-Loc w" in page


# --- report -------------------------------------------------------------------------------------


def old_chunks() -> list[dict]:
    """Results from before N-Loc (the protocol tests' chunks), with older routing diagnostics."""
    return [{**result, "diagnostics": {"m_loc_any_kept": 0.0}} for result in synthetic_chunks()]


def with_n_loc(result: dict, n_loc: float, editor: str = "new") -> dict:
    """A chunk result of the current format: N-Loc scores and N-Loc routing diagnostics."""
    metrics = {**result["metrics"], "n_loc": n_loc, "n_loc_same": n_loc / 2}
    diagnostics = {"m_loc_any_kept": 0.0, "n_loc_any_kept": 0.25, "n_loc_weight": 0.5}
    named = {"editor": editor, "name": editor.upper()}
    return {**result, **named, "metrics": metrics, "diagnostics": diagnostics}


def test_metric_names():
    assert METRICS == (*PAPER_METRICS, "n_loc")
    assert METRIC_NAMES["n_loc"] == "N-Loc" and METRIC_NAMES["n_loc_same"] == "N-Loc same"


def test_report_with_n_loc_keeps_avg_the_papers_five():
    first, second = synthetic_chunks()[:2]  # N = 1, paper metrics 1.0 and 0.5
    summary = aggregate([with_n_loc(first, 0.6), with_n_loc(second, 0.4)])
    row = summary["new"]["sizes"]["1"]
    assert row["n_loc"]["mean"] == pytest.approx(0.5) and row["n_loc_same"]["mean"] == 0.25
    assert row["avg"]["mean"] == pytest.approx(0.75)  # N-Loc is not averaged in
    table = markdown_table(summary)
    header = table.splitlines()[0]
    assert "| avg | N-Loc | Rel EM |" in header and header.endswith("| N-Loc same |")
    assert "| 75.00 | 50.00 ± 14.14 | - | - | - | 25.00 ± 7.07 |" in table


def test_report_renders_old_results_without_n_loc(tmp_path):
    old = old_chunks()
    new = [with_n_loc(old[-1], 0.6)]  # N = 1, paper metrics 0.2
    summary = aggregate(old + new)
    assert "n_loc" not in summary["a"]["sizes"]["1"]
    assert summary["a"]["sizes"]["1"]["avg"]["mean"] == 0.75  # avg still computed
    table = markdown_table(summary, exact_match=False)
    assert "| A | 10 | 1 | 80.00 | 80.00 | 80.00 | 80.00 | 80.00 | 80.00 | - |" in table
    assert "| NEW | 1 | 1 | 20.00 | 20.00 | 20.00 | 20.00 | 20.00 | 20.00 | 60.00 |" in table
    lines = diagnostics_table(old + new).splitlines()  # rows: A 1, A 10, B 1, NEW 1
    assert "| N-Loc any kept | N-Loc w | edits took |" in lines[0]  # took: verified edits only
    assert all(line.endswith("| - | - | - |") for line in lines[2:5])
    assert lines[5].startswith("| NEW |") and lines[5].endswith("| 25.0 | 50.0 | - |")

    written = {}
    for name, chunks in {"old-only": old, "mixed": old + new}.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "chunks.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunks))
        written[name] = write_report(folder)
        page = written[name]["table"].read_text()
        assert "| N-Loc |" in page and "N-Loc w" in page
        assert written[name]["plot"].stat().st_size > 0
    assert "exact_match_plot" not in written["old-only"]
    assert written["mixed"]["exact_match_plot"].stat().st_size > 0  # N-Loc same


# --- the evaluate module ------------------------------------------------------------------------


def test_evaluate_module_scores_n_loc_and_same_answer():
    evaluate = pytest.importorskip("evaluate")
    # N-Loc: the edited model's argmax tokens against the unedited model's, on the neighbour.
    n_loc = evaluate.load(str(METRIC_PATH)).compute(
        predictions=[[122, 97, 100], [1, 2]], references=[[109, 97, 100], [1, 2]]
    )
    assert n_loc["token_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    same = evaluate.load(str(METRIC_PATH), config_name="same_answer")
    result = same.compute(predictions=["zadrid", "lima"], references=["madrid", "lima"])
    assert result == {"same_answer": 0.5}
