"""The ``hf-liveedit`` command line.

Each sub-command lives in its own module under :mod:`hf_liveedit.commands` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules keep
their heavy imports (torch, transformers) inside ``run`` so that ``hf-liveedit --help`` stays fast.

Errors: a :class:`~hf_liveedit.commands.UsageError` (a bad flag, a missing or malformed input
file, a value out of range; commands check these before any heavy work) is printed as one line,
``hf-liveedit: error: ...``, with exit code 2; ``--debug`` adds its traceback. Any other exception
is a bug or an environment failure and propagates with its full traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from hf_liveedit.commands import UsageError, reading

PROG = "hf-liveedit"

# command name -> module under hf_liveedit.commands
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "train": "train",
    "evaluate": "evaluate",
    "build-benchmark": "build_benchmark",
    "build-backbone": "build_backbone",
    "train-projector": "train_projector",
    "train-router": "train_router",
}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors reach :func:`main` as :class:`UsageError`.

    argparse would print the usage and exit; raising instead gives every mistake, whether
    argparse or a command finds it, the same one-line report. Sub-parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()  # e.g. "evaluate run"
        raise UsageError(f"{command}: {message}" if command else message)


def build_parser(
    command: str | None = None, config_file: str | None = None
) -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per command.

    Args:
        command: The command being run. Flags generated from dataclasses (a command's
            ``argument_parser()``) need transformers, so only this command's are built; the
            others are listed with their help line.
        config_file: A YAML file of that command's settings (``--config``), used as the
            defaults of its generated flags.
    """
    parser = _Parser(
        prog=PROG, description="Lifelong knowledge editing for vision-language models."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of usage errors too"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"hf_liveedit.commands.{module_name}")
        heavy = name == command and hasattr(module, "argument_parser")
        generated = module.argument_parser() if heavy else None
        command_parser = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            parents=[generated] if generated else [],
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
        if generated is not None:
            command_parser.add_argument(
                "--config",
                metavar="FILE.yaml",
                help="settings by flag name (underscores); flags given here override them",
            )
            if config_file:
                command_parser.set_defaults(**_read_config(config_file, generated))
    return parser


def _read_config(path: str, generated: argparse.ArgumentParser) -> dict[str, Any]:
    """The settings of a YAML file, as defaults of the flags that ``generated`` parses.

    Raises:
        UsageError: the file is missing or not a YAML mapping, or names no such setting.
    """
    import yaml

    with reading(f"--config {path}", (OSError, UnicodeDecodeError, yaml.YAMLError)):
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {path}: expected a mapping of settings")
    known = {f.name for kind in generated.dataclass_types for f in fields(kind) if f.init}
    unknown = sorted(map(str, set(loaded) - known))
    if unknown:
        raise UsageError(f"--config {path}: unknown settings {unknown}")
    # as strings, argparse converts (and checks) them with the flag's type like typed flags
    scalar = (bool, int, float, str)
    return {
        key: str(value) if isinstance(value, scalar) else value for key, value in loaded.items()
    }


def _config_file(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (the last one given), if any."""
    found = None
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            found = argv[index + 1]
        elif arg.startswith("--config="):
            found = arg.split("=", 1)[1]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hf-liveedit`` console script.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The command's exit status; 2 after a usage error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # the first word that is not an option is the command (top-level options take no value)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        args = build_parser(command, _config_file(argv)).parse_args(argv)
        return int(args._run(args) or 0)
    except UsageError as error:
        if "--debug" in argv:  # also when parsing failed, before args.debug existed
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
