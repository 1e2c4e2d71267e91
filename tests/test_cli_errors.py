"""User mistakes on the command line: one line on stderr, exit code 2, nothing written.

Every case here fails before a model is loaded (most before torch is imported), so the module
runs in seconds; ``--debug`` adds the traceback, and a genuine bug still raises.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_liveedit import cli
from hf_liveedit.commands import build_backbone
from hf_liveedit.commands.train import resolve_settings


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An MMEdit JSON file of 10 records (the images are never opened: every case fails first)."""
    records = [
        {"src": f"What is shown {i}?", "alt": "Lyon", "image": f"{i}.png", "pred": ""}
        for i in range(10)
    ]
    (tmp_path / "images").mkdir()
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def fails(argv: list[str], capsys, root: Path, *expected: str) -> str:
    """Run the CLI in-process; assert exit 2, one error line naming ``expected``, no new file."""
    before = files(root)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hf-liveedit: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert files(root) == before  # no output folder, no untrained artefact
    return lines[0]


def train(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--backbone",
        "tiny",
        "--data",
        str(data),
        "--output-dir",
        str(tmp_path / "out"),
        *extra,
    ]


def evaluate(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    args = ["evaluate", "run", "--backbone", "tiny", "--data", str(data), "--editors", "liveedit"]
    return [
        *args,
        "--image-root",
        str(tmp_path / "images"),
        "--output",
        str(tmp_path / "res"),
        *extra,
    ]


# --- train ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        (None, ("--config", "No such file")),
        ("backbone: [tiny\n", ("--config",)),  # not YAML
        ("- a list\n", ("expected a mapping",)),
        ("bogus_key: 1\n", ("unknown settings ['bogus_key']",)),
        ("max_steps: -5\n", ("max_steps", ">= 1", "-5")),
        ("batch_size: eight\n", ("batch_size", "expected an integer")),
        ("learning_rate: .nan\n", ("learning_rate",)),
        ("cache_hidden_states: 3\n", ("cache_hidden_states", "bool")),
    ],
)
def test_train_refuses_a_bad_yaml_config(yaml_text, expected, data, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    if yaml_text is not None:
        config.write_text(yaml_text)
    fails(train(data, tmp_path, "--config", str(config)), capsys, tmp_path, *expected)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--max-steps", "-5"), ("--max-steps", ">= 1, got -5")),
        (("--max-steps", "0"), ("--max-steps",)),
        (("--batch-size", "two"), ("--batch-size", "'two'")),
        (("--max-records", "0"), ("--max-records: expected an integer >= 1, got 0",)),
        (("--backbone", "/nonexistent/model"), ("--backbone /nonexistent/model", "no such folder")),
        (("--backbone", "./models/x"), ("--backbone",)),
        (("--init-from", "/nonexistent"), ("--init-from", "no such folder")),
        (("--output-dir", "/nonexistent/a/b"), ("--output-dir", "parent folder")),
        (("--module-dim", "30", "--num-heads", "4"), ("divisible by num_heads",)),
        (("--expert-scale", "inf"), ("--expert-scale", "finite", "inf")),
        (("--lr-scheduler-type", "nope"), ("settings", "nope")),
        (("--resume", "x", "--init-from", "y"), ("exclude each other",)),
    ],
)
def test_train_refuses_bad_flags_before_loading(extra, expected, data, tmp_path, capsys):
    argv = train(data, tmp_path, *extra)
    if "--resume" in extra:  # both must exist for the exclusion to be the error
        for name in ("x", "y"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "adapter_config.json").write_text("{}")
        argv = [a if a not in ("x", "y") else str(tmp_path / a) for a in argv]
    fails(argv, capsys, tmp_path, *expected)


def test_train_reads_yaml_exponents_without_a_dot_as_numbers(tmp_path):
    """PyYAML reads ``1e-4`` as a string; it is the learning rate the user meant."""
    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: 1e-4\nbatch_size: 2\n")
    settings = resolve_settings(argparse.Namespace(config=str(config), max_steps=3))
    assert settings["learning_rate"] == 1e-4 and settings["batch_size"] == 2
    assert settings["max_steps"] == 3  # the flag wins over the file


def test_train_refuses_a_batch_larger_than_the_data(data, tmp_path, capsys):
    """10 records, batches of 64 with drop_last: no step; refused, no untrained generator."""
    fails(train(data, tmp_path, "--batch-size", "64"), capsys, tmp_path, "--batch-size 64", "10")


def test_train_refuses_a_missing_data_file(tmp_path, capsys):
    fails(train(tmp_path / "none.json", tmp_path), capsys, tmp_path, "--data", "no such file")


def test_train_refuses_a_malformed_data_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"src": "What?"}]))  # no alt, no image
    fails(train(bad, tmp_path), capsys, tmp_path, f"--data {bad}", "required MMEdit field")


# --- evaluate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--sizes", "a,b"), ("evaluate run: argument --sizes", "'a'")),
        (("--sizes", "0"), ("--sizes",)),
        (("--max-chunks", "1-5"), ("--max-chunks", "N:K")),
        (("--limit", "-1"), ("--limit",)),
        (("--editors", "liveedit,nope"), ("--editors", "nope")),
        (("--override", "ft-m:sizes=1"), ("--override",)),
        (("--override", "liveedit:sizes=x"), ("--override liveedit:sizes=x",)),
        (("--adapter", "/nonexistent"), ("--adapter", "no such folder")),
        (("--sizes", "1,100"), ("N = 100", "10")),  # 10 records: N = 100 would run nothing
    ],
)
def test_evaluate_refuses_bad_arguments(extra, expected, data, tmp_path, capsys):
    fails(evaluate(data, tmp_path, *extra), capsys, tmp_path, *expected)


def test_evaluate_refuses_a_folder_holding_a_run(data, tmp_path, capsys):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "run.json").write_text("{}")
    fails(evaluate(data, tmp_path, "--sizes", "1"), capsys, tmp_path, "--resume")


def test_evaluate_report_refuses_a_folder_without_results(tmp_path, capsys):
    fails(["evaluate", "report", str(tmp_path)], capsys, tmp_path, "chunks.jsonl")


# --- demo, build-benchmark, build-backbone, train-projector, train-router -----------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["demo", "--max-new-tokens", "0"], ("--max-new-tokens", ">= 1")),
        (["demo", "--num-edits", "-2"], ("--num-edits",)),
        (["demo", "--generator", "/nonexistent"], ("--generator /nonexistent", "no such folder")),
        (["demo", "--backbone", "tiny", "--generator", "g"], ("--backbone default only",)),
        (["demo", "--backbone", "large"], ("--backbone", "invalid choice")),
        (["build-benchmark", "--test-fraction", "5"], ("--test-fraction", "between 0 and 1")),
        (["build-benchmark", "--test-fraction", "0"], ("--test-fraction",)),
        (["build-benchmark", "--out", "{tmp}/x/y/z"], ("--out", "parent folder")),
        (["build-backbone", "--cache-dir", "{tmp}/x/y"], ("--cache-dir", "parent folder")),
        (["build-backbone", "--projector", "{tmp}"], ("--projector", "projector.json")),
        (["train-projector", "--output-dir", "{tmp}/p", "--steps", "0"], ("--steps",)),
        (["train-projector", "--output-dir", "{tmp}/x/y"], ("--output-dir",)),
        (["nope"], ("invalid choice",)),
        ([], ("required",)),
    ],
)
def test_other_commands_refuse_bad_arguments(argv, expected, tmp_path, capsys):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    fails(argv, capsys, tmp_path, *expected)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--validation_fraction", "1.5"), ("--validation_fraction",)),
        (("--steps", "0"), ("settings", "steps")),
        (("--generator", "/nonexistent"), ("--generator",)),
    ],
)
def test_train_router_refuses_bad_arguments(extra, expected, tmp_path, capsys):
    argv = ["train-router", "--backbone", "tiny", "--output_dir", str(tmp_path / "out"), *extra]
    fails(argv, capsys, tmp_path, *expected)


# --- --debug, genuine bugs, --help --------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["--debug", "build-backbone", "--cache-dir", str(tmp_path / "x" / "y")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "check_path" in err
    assert err.strip().splitlines()[-1].startswith("hf-liveedit: error: --cache-dir")


def test_a_bug_is_not_reported_as_a_usage_error(monkeypatch):
    def broken(args):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(build_backbone, "run", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["build-backbone"])


def test_help_does_not_import_torch():
    """``hf-liveedit --help`` builds every sub-parser; none may import torch (seconds)."""
    code = (
        "import sys\nfrom hf_liveedit import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train-router" in result.stdout


def test_train_router_help_still_lists_its_dataclass_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train-router", "--help"])
    assert exit_info.value.code == 0
    assert "--validation_fraction" in capsys.readouterr().out
