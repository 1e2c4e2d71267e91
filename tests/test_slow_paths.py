"""Whole jobs on real data: the benchmark build and `evaluate run` on the default backbone.

Marked ``slow`` (minutes on 2 cores; the benchmark build reads Debian packages that
``scripts/setup.sh`` fetches): left out of the default run, run them with

    .venv/bin/python -m pytest -q -m slow
"""

from __future__ import annotations

import json

import pytest

from hf_liveedit.cli import main
from hf_liveedit.data.benchmark.build import build_benchmark, read_split_files

pytestmark = pytest.mark.slow


def test_benchmark_build_splits_by_entity_and_image_and_keeps_predictions(tmp_path):
    out = tmp_path / "benchmark"
    build_benchmark(out, fill_preds=False, progress=False)
    train = json.loads((out / "train.json").read_text())
    test = json.loads((out / "test.json").read_text())
    assert len(train) > 500 and len(test) > 500
    # no entity and no edit image (nor its other rendering) in both splits
    assert not {r["entity_key"] for r in train} & {r["entity_key"] for r in test}
    edit_images = lambda rows: {r[k] for r in rows for k in ("image", "image_rephrase")}  # noqa: E731
    assert not edit_images(train) & edit_images(test)
    for record in train[:20] + test[:20]:
        for key in ("image", "image_rephrase", "m_loc"):
            assert (out / record[key]).is_file()

    # a prediction recorded earlier survives a rebuild of the same folder
    test[0]["pred"] = "an answer recorded before"
    (out / "test.json").write_text(json.dumps(test))
    build_benchmark(out, fill_preds=False, progress=False)
    rebuilt = {(r["image"], r["src"]): r["pred"] for r in read_split_files(out)}
    assert rebuilt[(test[0]["image"], test[0]["src"])] == "an answer recorded before"


def test_evaluate_run_on_the_default_backbone(tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "run", "--editors", "liveedit", "--sizes", "1", "--max-chunks", "1:2"]
    assert main([*args, "--diagnostics", "--output", str(out)]) == 0
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    assert len(chunks) == 2
    summary = json.loads((out / "summary.json").read_text())
    text = json.dumps(summary)
    for metric in ("rel", "t_gen", "m_gen", "t_loc", "m_loc", "n_loc"):
        assert metric in text
    assert (out / "results.md").is_file() and (out / "metrics_vs_edits.png").is_file()
