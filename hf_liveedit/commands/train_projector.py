"""``hf-liveedit train-projector``: retrain the default backbone's projector."""

from __future__ import annotations

import argparse

from hf_liveedit.commands import check_path, positive_int

HELP = (
    "Retrain the default backbone's projector on the packaged captioned images (about 12 min on "
    "2 cores); use the result with `build-backbone --projector`."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options.

    Args:
        parser: The sub-command parser.
    """
    parser.add_argument(
        "--output-dir", required=True, help="where projector.safetensors and projector.json go"
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="reusable intermediates (default: the backbone cache's work/ folder)",
    )
    parser.add_argument("--steps", type=positive_int, default=None, help="optimizer steps [150]")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate and write the projector.

    Args:
        args: Parsed options.

    Returns:
        Exit status.
    """
    check_path("--output-dir", args.output_dir, "new_dir")
    if args.work_dir:
        check_path("--work-dir", args.work_dir, "new_dir")

    import logging

    from hf_liveedit.embedded import MissingPackageError, default_cache_dir
    from hf_liveedit.embedded.projector_training import TRAIN_STEPS, train_default_projector

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = train_default_projector(
            args.output_dir,
            args.work_dir or default_cache_dir() / "work",
            steps=args.steps or TRAIN_STEPS,
        )
    except MissingPackageError as error:
        print(f"error: {error}")
        return 1
    print(f"projector: {out}; assemble with `hf-liveedit build-backbone --projector {out}`")
    return 0
