"""``hf-liveedit build-backbone``: assemble the embedded default LLaVA into the cache."""

from __future__ import annotations

import argparse

from hf_liveedit.commands import check_path

HELP = (
    "Assemble the embedded default backbone (EfficientNet-Lite0 + packaged projector + SmolLM2 "
    "LLaVA) into the cache."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options.

    Args:
        parser: The sub-command parser.
    """
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder (default: $HF_LIVEEDIT_CACHE/default-backbone or "
        "~/.cache/hf_liveedit/default-backbone)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild the model even if a finished build exists"
    )
    parser.add_argument(
        "--projector",
        default=None,
        help="a folder written by `hf-liveedit train-projector` to use instead of the packaged "
        "projector (gives another backbone, which the packaged generator refuses)",
    )


def run(args: argparse.Namespace) -> int:
    """Build (or find) the backbone and print where it is and its weights' SHA-256.

    Args:
        args: Parsed options.

    Returns:
        Exit status.
    """
    import json
    import logging

    # checked before the build (minutes): a typo must not create a deep tree and start it
    if args.cache_dir:
        check_path("--cache-dir", args.cache_dir, "new_dir")
    if args.projector:
        check_path("--projector", args.projector, "dir", containing="projector.json")

    from hf_liveedit.embedded import MissingPackageError, build_default_backbone

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model_dir = build_default_backbone(
            args.cache_dir,
            force=args.force,
            projector_dir=args.projector,
        )
    except MissingPackageError as error:
        print(f"error: {error}")
        return 1
    info = json.loads((model_dir / "build_info.json").read_text())
    print(f"default backbone: {model_dir}")
    print(json.dumps(info, indent=1))
    return 0
