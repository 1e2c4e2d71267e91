"""User mistakes on the command line: one line on stderr, exit code 2, nothing written.

Every case here fails before a model is loaded (most before torch is imported), so the module
runs in seconds; ``--debug`` adds the traceback, and a genuine bug still raises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_liveedit import LiveEditConfig, cli
from hf_liveedit.commands import build_backbone


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
        "--output_dir",
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
        ("batch_size: 8\n", ("unknown settings ['batch_size']",)),  # the flag's old name
        ("max_records: -5\n", ("max_records", ">= 1", "-5")),
        ("per_device_train_batch_size: eight\n", ("per_device_train_batch_size", "'eight'")),
        ("soft_routing_visual_weight: .nan\n", ("soft_routing_visual_weight",)),
        ("cache_hidden_states: 3\n", ("cache_hidden_states", "got 3")),
        ("lr_scheduler_type: nope\n", ("settings", "nope", "SchedulerType")),
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
        (("--per_device_train_batch_size", "two"), ("--per_device_train_batch_size", "'two'")),
        (("--max_records", "0"), ("--max_records: expected an integer >= 1, got 0",)),
        (("--backbone", "/nonexistent/model"), ("--backbone /nonexistent/model", "no such folder")),
        (("--backbone", "./models/x"), ("--backbone",)),
        (("--init_from", "/nonexistent"), ("--init_from", "no such folder")),
        (("--output_dir", "/nonexistent/a/b"), ("--output_dir", "parent folder")),
        (("--module_dim", "30", "--num_heads", "4"), ("divisible by num_heads",)),
        (("--expert_scale", "inf"), ("settings", "expert_scale", "finite", "inf")),
        (("--hard_routing", "nearest"), ("settings", "hard_routing", "nearest")),
        (("--lr_scheduler_type", "nope"), ("--lr_scheduler_type", "nope")),
        (("--rel_weight", "-1"), ("settings", "rel_weight", "-1")),
        (("--resume", "x", "--init_from", "y"), ("exclude each other",)),
        (("--batch-size", "2"), ("unrecognized arguments: --batch-size",)),
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


def test_train_settings_come_from_the_dataclasses_the_yaml_file_and_the_flags(tmp_path):
    """Defaults from the dataclasses (and the command's own), then the file, then the flags."""
    from hf_liveedit.commands.train import split_settings

    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: 1e-4\nper_device_train_batch_size: 2\nmax_steps: 9\n")
    argv = ["train", "--config", str(config), "--max_steps", "3", "--report_to", "none"]
    args = cli.build_parser("train", str(config)).parse_args(argv)
    script, liveedit_config, training_args = split_settings(args)
    assert training_args.learning_rate == 1e-4  # PyYAML reads 1e-4 as a string: converted
    assert training_args.per_device_train_batch_size == 2
    assert training_args.max_steps == 3  # the flag wins over the file
    assert training_args.dataloader_drop_last and training_args.cache_hidden_states
    assert training_args.output_dir == "liveedit-default"
    assert liveedit_config.module_dim == LiveEditConfig().module_dim  # the library's default
    assert script.backbone == "default"


def test_train_refuses_a_batch_larger_than_the_data(data, tmp_path, capsys):
    """10 records, batches of 64 with drop_last: no step; refused, no untrained generator."""
    argv = train(data, tmp_path, "--per_device_train_batch_size", "64")
    fails(argv, capsys, tmp_path, "--per_device_train_batch_size 64", "10")


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
        (("--novel-targets",), ("--novel-targets", "--fresh-targets")),
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
        (["demo", "--backbone", "tiny", "--num-edits", "3"], ("--num-edits applies to",)),
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
        (("--steps", "-1"), ("settings", "steps")),
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


@pytest.mark.parametrize("name", ["train.yaml", "finetune.yaml"])
def test_the_packaged_generators_training_files_are_valid_train_configs(name):
    from hf_liveedit.commands.train import split_settings
    from hf_liveedit.pretrained import default_generator_dir

    config = str(default_generator_dir() / name)
    args = cli.build_parser("train", config).parse_args(["train", "--config", config])
    script, liveedit_config, training_args = split_settings(args)
    assert script.backbone == "default" and training_args.per_device_train_batch_size == 8
    assert training_args.lr_scheduler_type == "cosine"


def test_every_dataclass_command_reads_a_yaml_config(tmp_path, capsys):
    """``--config`` works for each command whose flags come from dataclasses (train-router too)."""
    config = tmp_path / "router.yaml"
    config.write_text("steps: 5\nhard_routing: image_key\nimage_key_threshold: 0.9\n")
    argv = ["train-router", "--config", str(config), "--output_dir", "x", "--steps", "7"]
    args = cli.build_parser("train-router", str(config)).parse_args(argv)
    assert (args.steps, args.hard_routing, args.image_key_threshold) == (7, "image_key", 0.9)
    config.write_text("stepz: 5\n")
    fails(argv, capsys, tmp_path, "--config", "unknown settings ['stepz']")
