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
from typing import NoReturn

from hf_liveedit.commands import UsageError

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per command.

    Args:
        command: The command being run. Flags generated from dataclasses (a command's
            ``argument_parser()``) need transformers, so only this command's are built; the
            others are listed with their help line.
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
        command_parser = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            parents=[module.argument_parser()] if heavy else [],
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


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
        args = build_parser(command).parse_args(argv)
        return int(args._run(args) or 0)
    except UsageError as error:
        if "--debug" in argv:  # also when parsing failed, before args.debug existed
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
