"""``hf-liveedit build-benchmark``: build the packaged editing benchmark."""

from __future__ import annotations

import argparse

from hf_liveedit.commands import check_path, number, positive_int

HELP = "Build the real-data editing benchmark (MMEdit format) from Debian and PyPI packages."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's flags.

    Args:
        parser: The sub-command's parser.
    """
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: $HF_LIVEEDIT_CACHE/benchmark or "
        "~/.cache/hf_liveedit/benchmark)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for splits and edit targets")
    parser.add_argument(
        "--test-fraction",
        type=number(float, 0, 1, strict=True),
        default=0.55,
        help="share of each entity kind's entities in the test split",
    )
    preds = parser.add_mutually_exclusive_group()
    preds.add_argument(
        "--skip-preds",
        action="store_true",
        help="do not run the default backbone; leave `pred` empty",
    )
    preds.add_argument(
        "--fill-preds",
        action="store_true",
        help="only fill empty `pred` fields of an existing build",
    )
    preds.add_argument(
        "--redo-preds",
        action="store_true",
        help="answer every record of an existing build again (backbone changed)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="prompts per generate call"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Build (or fill the preds of) the benchmark.

    Args:
        args: Parsed flags.

    Returns:
        0 on success, 1 when `--fill-preds`/`--redo-preds` finds no backbone or no build, or a
        package the build reads is missing.
    """
    from pathlib import Path

    from hf_liveedit.data.benchmark import build_benchmark, default_benchmark_dir
    from hf_liveedit.data.benchmark.build import refresh_after_preds
    from hf_liveedit.data.benchmark.preds import fill_predictions
    from hf_liveedit.packages import MissingPackageError

    if args.fill_preds or args.redo_preds:
        out = Path(args.out) if args.out else default_benchmark_dir()
        if not (out / "test.json").is_file():
            print(f"no benchmark in {out}: build it first (without --fill-preds)")
            return 1
        if not fill_predictions(
            out, progress=not args.quiet, batch_size=args.batch_size, redo=args.redo_preds
        ):
            print(
                "the default backbone (hf_liveedit.embedded.load_default_backbone) is not "
                "available; `pred` stays empty"
            )
            return 1
        missing = refresh_after_preds(out)
        print(f"filled pred in {out} ({missing} records still without pred)")
        return 0
    if args.out:  # a typo must not create a deep tree of folders
        check_path("--out", args.out, "new_dir")
    try:
        report = build_benchmark(
            args.out,
            seed=args.seed,
            test_fraction=args.test_fraction,
            fill_preds=not args.skip_preds,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
    except MissingPackageError as error:  # names the package and the command that gets it
        print(f"error: {error}")
        return 1
    print(report.summary())
    return 0
