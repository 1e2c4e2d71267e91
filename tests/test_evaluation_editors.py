"""Every editor on a tiny LLaVA: one edit changes the target answer, reset restores the base."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_liveedit, rig_routing

from hf_liveedit.evaluation.cases import EditCase, Sample
from hf_liveedit.evaluation.editors import BASELINES, LiveEditEditor
from hf_liveedit.evaluation.metrics import answer_predictions, answer_targets, answer_window
from hf_liveedit.evaluation.scoring import locality_reference, score_cases
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

PROMPT = "What is the capital? The answer is:"


def predicted_and_target(editor, sample: Sample) -> tuple[list[int], list[int]]:
    inputs = editor.build_inputs([sample.image], [sample.prompt], [sample.target])
    keep = answer_window(inputs["labels"])
    logits = editor.logits(inputs, keep)
    return (
        answer_predictions(logits, inputs["labels"][:, -keep:])[0],
        answer_targets(inputs["labels"])[0],
    )


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


@pytest.mark.parametrize("key", sorted(BASELINES))
def test_baseline_edit_changes_the_answer_and_reset_restores_the_base(llava, key):
    model, processor = llava
    torch.manual_seed(0)
    flags = [p.requires_grad for p in model.parameters()]
    editor = BASELINES[key](model, processor)
    sample = Sample(tiny_image(0), PROMPT, "Lyon")
    probe = editor.build_inputs([tiny_image(1)], ["Name it."], ["a dog"])
    base = editor.logits(probe, answer_window(probe["labels"]))
    predicted, target = predicted_and_target(editor, sample)
    assert predicted != target  # the unedited tiny model does not already answer "Lyon"
    editor.edit(sample)
    predicted, target = predicted_and_target(editor, sample)
    assert predicted == target
    editor.reset()
    assert torch.equal(editor.logits(probe, answer_window(probe["labels"])), base)
    editor.close()
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_scoring_a_case_after_a_baseline_edit(llava):
    model, processor = llava
    editor = BASELINES["ft-l"](model, processor)
    case = EditCase(
        index=5,
        edit=Sample(tiny_image(0), PROMPT, "Lyon"),
        t_gen=Sample(tiny_image(0), "Name the capital. The answer is:", "Lyon"),
        m_gen=Sample(tiny_image(2), PROMPT, "Lyon"),
        t_loc=Sample(None, "nq question: who wrote hamlet", "Shakespeare"),
        m_loc=Sample(tiny_image(3), "What is this? The answer is:", "a cat"),
    )
    reference = locality_reference(editor, [case])
    unedited = score_cases(editor, [case], reference)[0]
    assert unedited["t_loc"] == 1.0 and unedited["m_loc"] == 1.0  # unedited agrees with itself
    editor.edit(case.edit)
    scores = score_cases(editor, [case], reference)[0]
    assert scores["index"] == 5 and scores["rel"] == 1.0 and scores["rel_em"] == 1.0
    assert set(scores) >= {"t_gen", "m_gen", "t_loc", "m_loc", "t_gen_em", "m_gen_em"}
    assert scores["n_loc"] is None and "n_loc_same" not in scores  # no neighbour attached
    editor.close()


def test_liveedit_editor_edits_through_the_adapter_and_resets():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    editor = LiveEditEditor(liveedit)
    sample = Sample(tiny_image(0), PROMPT, "Lyon")
    inputs = editor.build_inputs([sample.image], [sample.prompt], [sample.target])
    keep = answer_window(inputs["labels"])
    base = editor.logits(inputs, keep)
    editor.edit(sample)
    assert len(liveedit.edits) == 1
    assert not torch.equal(editor.logits(inputs, keep), base)
    editor.reset()
    assert len(liveedit.edits) == 0 and torch.equal(editor.logits(inputs, keep), base)
    editor.close()
    assert liveedit._handles == []  # unloaded


def test_verified_liveedit_editor_is_named_apart_and_reports_what_took():
    liveedit = make_liveedit("llava", expert_scale=50.0, verify_edits=True, refine_steps=3)
    rig_routing(liveedit, keep=True)
    editor = LiveEditEditor(liveedit, diagnostics=True)
    assert editor.name == "LiveEdit, verified"
    cases = [
        EditCase(index, Sample(tiny_image(index), PROMPT, target), None, None, None, None)
        for index, target in ((3, "Lyon"), (5, "Paris Nord"))
    ]
    for case in cases:
        editor.edit(case.edit)
    records = liveedit.edits
    stats = editor.diagnostics(cases, [3, 5])
    assert stats["edit_took"] == sum(record.took for record in records) / 2
    assert stats["edit_refine_steps"] == sum(record.refine_steps for record in records) / 2
    assert all(record.refine_steps > 0 for record in records if not record.took)
    editor.close()
    # unverified: named as before, and no verification statistics
    plain = LiveEditEditor(make_liveedit("llava"), diagnostics=True)
    assert plain.name == "LiveEdit"
    plain.edit(cases[0].edit)
    assert "edit_took" not in plain.diagnostics(cases[:1], [3])
    plain.close()


def test_evaluate_run_end_to_end_on_a_tiny_mmedit_file(tmp_path):
    from hf_liveedit.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(4):
        tiny_image(seed).save(images / f"{seed}.png")
    records = [
        {
            "src": f"What is shown {i}?",
            "rephrase": f"Name what is shown {i}.",
            "pred": "",
            "alt": "Lyon",
            "image": f"{i % 4}.png",
            "image_rephrase": f"{(i + 1) % 4}.png",
            "loc": "nq question: who wrote hamlet",
            "loc_ans": "Shakespeare",
            "m_loc": f"{(i + 2) % 4}.png",
            "m_loc_q": "What animal is this?",
            "m_loc_a": "a cat",
        }
        for i in range(3)
    ]
    data = tmp_path / "evqa_eval.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "results"
    code = main(
        [
            "evaluate",
            "run",
            "--backbone",
            "tiny",
            "--data",
            str(data),
            "--image-root",
            str(images),
            "--editors",
            "grace,liveedit-verified",
            "--sizes",
            "1,2",
            "--max-chunks",
            "1:2",
            "--override",
            "liveedit-verified:sizes=1",
            "--override",
            "liveedit-verified:max_chunks=1:1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    assert [(chunk["editor"], chunk["num_edits"]) for chunk in chunks] == [
        ("grace", 1),
        ("grace", 1),
        ("grace", 2),
        ("liveedit-verified", 1),
    ]
    page = (out / "results.md").read_text()
    assert "| GRACE | 2 | 1 |" in page and "| LiveEdit, verified | 1 | 1 |" in page
    # the cost table: GRACE's N = 2 chunk applied 2 edits in its recorded edit time
    per_edit = chunks[2]["edit_seconds"] / 2
    assert f"| GRACE | 2 | 2 | {per_edit:.2f} | 2 |" in page.split("## Cost")[1]
    assert json.loads((out / "run.json").read_text())["finished_at"]


def test_liveedit_routing_diagnostics():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    editor = LiveEditEditor(liveedit, diagnostics=True)
    cases = [
        EditCase(
            index=index,
            edit=Sample(tiny_image(index), PROMPT, "Lyon"),
            t_gen=None,
            m_gen=None,
            t_loc=Sample(None, "nq question: who wrote hamlet", "Shakespeare"),
            m_loc=None,
        )
        for index in (7, 9)
    ]
    for case in cases:
        editor.edit(case.edit)
    stats = editor.diagnostics(cases, [7, 9])
    # the same statistics from the routing the model records on each edit input
    with liveedit.record_routing() as routing, torch.no_grad():
        for case in cases:
            liveedit(**liveedit.build_inputs(case.edit.image, case.edit.prompt))
    weights = torch.cat(routing)  # [input, expert]; expert i is case i's
    own, other = weights.diagonal(), weights.sum(dim=1) - weights.diagonal()
    kept = (weights > 0).sum(dim=1).float()
    assert stats["rel_recall"] == 1.0  # each edit's own input keeps its own expert
    assert stats["rel_kept"] == pytest.approx(kept.mean().item())
    assert stats["rel_precision"] == pytest.approx((1 / kept).mean().item())
    assert stats["rel_own_weight"] == pytest.approx(own.mean().item(), rel=1e-5)
    assert stats["rel_other_weight"] == pytest.approx(other.mean().item(), rel=1e-5)
    assert 0 < stats["rel_own_weight"] < 1
    assert stats["t_loc_any_kept"] == 0.0  # text-only inputs are never routed
    assert editor.diagnostics(cases, [7]) is None  # a mismatched chunk is not measured
    editor.close()


def test_liveedit_m_gen_diagnostics_by_picture_source():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    editor = LiveEditEditor(liveedit, diagnostics=True)
    sources = {3: "flagpy", 5: "flagpy", 8: "kgeography-maps"}
    cases = [
        EditCase(
            index=index,
            edit=Sample(tiny_image(index), PROMPT, "Lyon"),
            t_gen=None,
            m_gen=Sample(tiny_image(index if index != 8 else 100), PROMPT, "Lyon"),
            t_loc=None,
            m_loc=None,
            m_gen_source=source,
        )
        for index, source in sources.items()
    ]
    for case in cases:
        editor.edit(case.edit)
    stats = editor.diagnostics(cases, list(sources))
    with liveedit.record_routing() as routing, torch.no_grad():
        for case in cases:
            liveedit(**liveedit.build_inputs(case.m_gen.image, case.m_gen.prompt))
    own = torch.cat(routing).diagonal()  # [input]: the weight of each case's own expert
    by_source = stats["m_gen_by_source"]
    assert set(by_source) == {"flagpy", "kgeography-maps"}
    assert by_source["flagpy"]["count"] == 2 and by_source["kgeography-maps"]["count"] == 1
    assert by_source["flagpy"]["recall"] == 1.0  # the edit's own picture: kept
    assert by_source["flagpy"]["own_weight"] == pytest.approx(own[:2].mean().item(), rel=1e-5)
    assert by_source["kgeography-maps"]["recall"] == float(own[2] > 0)
    assert by_source["kgeography-maps"]["own_weight"] == pytest.approx(own[2].item(), abs=1e-6)
    editor.close()


def test_report_by_source_pools_records_and_weights_routing_by_count():
    from hf_liveedit.evaluation.report import by_source_table

    def chunk(records, by_source):
        return {
            "editor": "liveedit",
            "name": "LiveEdit",
            "num_edits": 10,
            "records": records,
            "diagnostics": {"m_gen_by_source": by_source},
        }

    chunks = [
        chunk(
            [{"m_gen": 1.0, "m_gen_source": "flagpy"}, {"m_gen": 0.0, "m_gen_source": "flagpy"}],
            {"flagpy": {"count": 2, "recall": 1.0, "own_weight": 0.9}},
        ),
        chunk(
            [{"m_gen": 0.5, "m_gen_source": "flagpy"}, {"m_gen": 0.2, "m_gen_source": "maps"}],
            {
                "flagpy": {"count": 1, "recall": 0.0, "own_weight": 0.0},
                "maps": {"count": 1, "recall": 0.0, "own_weight": 0.0},
            },
        ),
    ]
    lines = by_source_table(chunks).splitlines()
    # flagpy: M-Gen mean of 1, 0, 0.5; own kept (2 x 1 + 1 x 0) / 3; own w (2 x 0.9) / 3
    assert lines[2] == "| LiveEdit | 10 | flagpy | 3 | 50.0 | 66.7 | 60.0 |"
    assert lines[3] == "| LiveEdit | 10 | maps | 1 | 20.0 | 0.0 | 0.0 |"
    assert by_source_table([chunk([{"m_gen": 1.0}], {})]) is None  # no sources recorded
