"""The ``hf-liveedit`` command line.

Each sub-command lives in its own module under :mod:`hf_liveedit.commands` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules keep
their heavy imports (torch, transformers) inside ``run`` so that ``hf-liveedit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="hf-liveedit", description="Lifelong knowledge editing for vision-language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"hf_liveedit.commands.{module_name}")
        # commands whose flags come from dataclasses provide them as a parent parser
        parents = [module.argument_parser()] if hasattr(module, "argument_parser") else []
        command_parser = sub.add_parser(
            name, help=module.HELP, description=module.HELP, parents=parents
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hf-liveedit`` console script."""
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
