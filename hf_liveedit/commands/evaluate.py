"""``hf-liveedit evaluate``: the lifelong editing benchmark of LiveEdit and the baselines.

``hf-liveedit evaluate run`` applies the sequential protocol to every chosen editor and writes
``chunks.jsonl`` (one line per chunk, as soon as it is scored) and ``run.json`` (the exact
command, date, plan); then the report. ``hf-liveedit evaluate report DIR`` rebuilds
``summary.json``, ``results.md`` and the plots from those files.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hf_liveedit.commands import (
    ADAPTER_CONFIGS,
    UsageError,
    check_model_name,
    check_path,
    int_list,
    per_size,
    positive_int,
    reading,
)

HELP = "Benchmark LiveEdit and baseline editors under sequential editing (run / report)."

#: ``liveedit-verified``: the same adapter with ``verify_edits`` on (see LiveEditConfig).
EDITOR_KEYS = ("liveedit", "liveedit-verified", "ft-l", "ft-m", "tp", "lemoe", "grace")
LIVEEDIT_KEYS = {"liveedit": False, "liveedit-verified": True}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="Run the protocol and write results + report.")
    run.add_argument(
        "--backbone",
        default="default",
        help="'default': the embedded LLaVA (hf_liveedit.embedded); 'tiny': a random "
        "tiny LLaVA (smoke tests only, meaningless scores); or a saved VLLM folder / Hub id.",
    )
    run.add_argument(
        "--adapter",
        help="Trained LiveEdit adapter folder (generator) for 'liveedit' and 'liveedit-verified' "
        "(the same adapter with verify_edits on). Default: the packaged "
        "generator (hf_liveedit.pretrained) with --backbone default, an untrained generator "
        "(smoke tests only) with --backbone tiny.",
    )
    run.add_argument(
        "--data",
        default="benchmark",
        help="'benchmark' (the packaged benchmark) or an MMEdit-format JSON file.",
    )
    run.add_argument("--benchmark-dir", help="Benchmark folder (default: the build cache).")
    run.add_argument("--split", default="test", help="Benchmark split.")
    run.add_argument("--image-root", help="Image folder of an MMEdit JSON file.")
    run.add_argument(
        "--limit", type=positive_int, help="Use only the first LIMIT records of the file."
    )
    run.add_argument(
        "--fresh-targets",
        type=int,
        metavar="SEED",
        help="Replace each record's target by another value of its relation, drawn with SEED "
        "(never its true answer nor its own target; needs the packaged benchmark's relation and "
        "answer columns): edits with targets a generator never saw with these records, e.g. "
        "'--split train --fresh-targets 0' to validate a generator without the test split.",
    )
    run.add_argument(
        "--novel-targets",
        action="store_true",
        help="With --fresh-targets: invent every target (the start of one value of the "
        "relation joined to the end of another, a string no record has), to validate on targets "
        "a generator never wrote in training.",
    )
    run.add_argument(
        "--editors",
        default=",".join(EDITOR_KEYS),
        help=f"Comma-separated editors among {', '.join(EDITOR_KEYS)}.",
    )
    run.add_argument(
        "--sizes", type=int_list, default="1,10,100,1000", help="Numbers of sequential edits N."
    )
    run.add_argument(
        "--max-chunks",
        type=per_size,
        default="",
        help="Most chunks per N, e.g. '1:50,10:10' (default: all chunks).",
    )
    run.add_argument(
        "--score-limit",
        type=per_size,
        default="",
        help="Most records scored per chunk, per N, e.g. '100:100,1000:200' (a seeded sample; "
        "all edits are applied; default: all records).",
    )
    run.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="EDITOR:KEY=VALUE",
        help="Per-editor plan change, KEY in sizes, max_chunks, score_limit; e.g. "
        "'ft-m:sizes=1,10' or 'ft-m:max_chunks=1:10,10:2'. Repeatable.",
    )
    run.add_argument(
        "--shuffle-seed",
        type=int,
        default=0,
        help="Shuffle the records with this seed before chunking (default 0).",
    )
    run.add_argument("--no-shuffle", action="store_true", help="Keep the file's record order.")
    run.add_argument(
        "--batch-size", type=positive_int, default=16, help="Samples per scoring pass."
    )
    run.add_argument(
        "--no-exact-match",
        action="store_true",
        help="Skip greedy-generation exact match (saves about a third of scoring).",
    )
    run.add_argument(
        "--diagnostics",
        action="store_true",
        help="Also measure LiveEdit's routing after each chunk (hard-filter recall and precision, "
        "weight on the own vs other experts, experts kept by locality samples).",
    )
    run.add_argument("--seed", type=int, default=0, help="Seed of torch and of scored samples.")
    run.add_argument("--output", default="evaluation-results", help="Results folder.")
    run.add_argument(
        "--resume",
        action="store_true",
        help="Add to an existing results folder: skip its finished chunks (e.g. after an "
        "interruption, or to run more editors or sizes into the same table).",
    )
    run.add_argument(
        "--estimate-only",
        action="store_true",
        help="Time one edit + one scored record per editor, print the projected "
        "run time, and stop.",
    )
    report = actions.add_parser("report", help="Rebuild the table and plots from a results folder.")
    report.add_argument("results", help="Results folder (with chunks.jsonl).")


def build_plans(args: argparse.Namespace, keys: list[str]):
    """One :class:`~hf_liveedit.evaluation.protocol.Plan` per editor, with the overrides applied."""
    from dataclasses import replace

    from hf_liveedit.evaluation.protocol import Plan

    base = Plan(
        sizes=args.sizes,
        max_chunks=args.max_chunks,
        score_limit=args.score_limit,
        seed=args.seed,
        batch_size=args.batch_size,
        exact_match=not args.no_exact_match,
    )
    plans = dict.fromkeys(keys, base)
    parsers = {"sizes": int_list, "max_chunks": per_size, "score_limit": per_size}
    for override in args.override:
        key, _, setting = override.partition(":")
        field, _, value = setting.partition("=")
        if key not in plans or field not in parsers:
            raise UsageError(
                f"bad --override {override!r}: expected EDITOR:KEY=VALUE with EDITOR "
                f"in {keys} and KEY in {sorted(parsers)}"
            )
        with reading(f"--override {override}", (argparse.ArgumentTypeError,)):
            plans[key] = replace(plans[key], **{field: parsers[field](value)})
    return plans


def _load_data(args: argparse.Namespace):
    from hf_liveedit.data import load_benchmark, load_mmedit

    with reading(f"--data {args.data}"):
        if args.data == "benchmark":
            dataset = load_benchmark(args.benchmark_dir, args.split)
            described = f"packaged benchmark, split {args.split}"
        else:
            dataset = load_mmedit(args.data, args.image_root)
            described = f"{args.data} (images: {args.image_root})"
    if args.limit:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
        described += f", first {len(dataset)} records"
    if args.fresh_targets is not None:
        dataset = with_fresh_targets(dataset, args.fresh_targets, args.novel_targets)
        kind = "invented" if args.novel_targets else "redrawn"
        described += f", targets {kind} with seed {args.fresh_targets}"
    return dataset, described


def with_fresh_targets(dataset, seed: int, novel: bool = False):
    """The records with each target replaced by another value of its relation (seeded).

    The new target is never the record's true answer nor its own target; with ``novel`` it is
    invented (:meth:`~hf_liveedit.data.targets.CounterfactualTargets.invent`), a string no
    record has.

    Raises:
        UsageError: the data has no relation / answer columns.
    """
    import torch

    from hf_liveedit.data.targets import CounterfactualTargets

    with reading("--fresh-targets", (ValueError,)):
        pools = CounterfactualTargets(dataset, novel_rate=float(novel))
    generator = torch.Generator().manual_seed(seed)
    columns = dataset.select_columns(["relation", "answer", "alt"])
    targets = [pools.draw(record, (record["alt"],), generator) for record in columns]
    return dataset.remove_columns("alt").add_column("alt", targets)


def _check_inputs(args: argparse.Namespace) -> list[str]:
    """Refuse bad editors, missing inputs and an output folder in use; returns the editors."""
    keys = [key.strip() for key in args.editors.split(",") if key.strip()]
    unknown = sorted(set(keys) - set(EDITOR_KEYS))
    if unknown or not keys:
        what = f"unknown {unknown}" if unknown else "none given"
        raise UsageError(f"--editors: {what}; choose among {list(EDITOR_KEYS)}")
    check_model_name("--backbone", args.backbone)
    if args.novel_targets and args.fresh_targets is None:
        raise UsageError("--novel-targets invents the targets of --fresh-targets: pass both")
    if args.adapter:
        check_path("--adapter", args.adapter, "dir", containing=ADAPTER_CONFIGS)
    if args.data == "benchmark":
        if args.benchmark_dir:
            check_path("--benchmark-dir", args.benchmark_dir, "dir")
    else:
        check_path("--data", args.data, "file")
        if not args.image_root:
            raise UsageError("--image-root is required with an MMEdit JSON file")
        check_path("--image-root", args.image_root, "dir")
    output = check_path("--output", args.output, "new_dir")
    if (output / "run.json").is_file() and not (args.resume or args.estimate_only):
        raise UsageError(
            f"--output {output} already holds a run: pass --resume to add to it (finished "
            "chunks are skipped) or choose another --output"
        )
    return keys


def _check_sizes(plans: dict, num_records: int) -> None:
    """Refuse a size N with no full chunk of N records: it would run nothing, silently."""
    for key, plan in plans.items():
        too_big = [size for size in plan.sizes if size > num_records]
        if too_big:
            raise UsageError(
                f"--sizes: N = {too_big[0]} ({key}) needs at least {too_big[0]} records, "
                f"the data has {num_records}"
            )


def _editor_factories(
    keys: list[str], model, processor, adapter: str | None, diagnostics: bool = False
):
    from hf_liveedit import LiveEditConfig, get_liveedit_model
    from hf_liveedit.evaluation.editors import BASELINES, LiveEditEditor

    def liveedit(verify: bool):
        if adapter:
            return LiveEditEditor.from_pretrained(model, processor, adapter, diagnostics, verify)
        print("warning: no --adapter: LiveEdit runs with an UNTRAINED generator", file=sys.stderr)
        config = LiveEditConfig(verify_edits=verify)
        return LiveEditEditor(get_liveedit_model(model, config, processor), diagnostics)

    factories = {}
    for key in keys:
        if key in LIVEEDIT_KEYS:
            factories[key] = lambda verify=LIVEEDIT_KEYS[key]: liveedit(verify)
        else:
            factories[key] = lambda cls=BASELINES[key]: cls(model, processor)
    return factories


def _run(args: argparse.Namespace) -> int:
    # the user's inputs are checked before the heavy imports; the data before the backbone
    keys = _check_inputs(args)
    plans = build_plans(args, keys)

    import json
    import platform
    from datetime import datetime, timezone

    import peft
    import torch
    import transformers

    from hf_liveedit.evaluation.cases import CaseSet
    from hf_liveedit.evaluation.protocol import (
        ResultsWriter,
        estimate_editor,
        plan_to_json,
        record_order,
        run_protocol,
    )
    from hf_liveedit.evaluation.report import write_report

    torch.manual_seed(args.seed)
    dataset, described = _load_data(args)
    _check_sizes(plans, len(dataset))
    cases = CaseSet(dataset)
    shuffle = None if args.no_shuffle else args.shuffle_seed
    order = record_order(len(cases), shuffle)
    from hf_liveedit.commands.train import _load_backbone  # the same loader as `train`

    model, processor = _load_backbone(args.backbone)
    adapter = args.adapter
    if adapter is None and args.backbone == "default" and LIVEEDIT_KEYS.keys() & set(keys):
        from hf_liveedit.pretrained import default_generator_dir

        adapter = str(default_generator_dir())
    factories = _editor_factories(keys, model, processor, adapter, args.diagnostics)

    estimates = {}
    print("time estimate (one edit + one scored record per editor):")
    for key in keys:
        editor = factories[key]()
        try:
            estimates[key] = estimate_editor(editor, cases, order, plans[key])
        finally:
            editor.close()
        e = estimates[key]
        print(
            f"  {key:9s} edit {e['edit_seconds']:.2f}s, score {e['score_seconds']:.2f}s/record; "
            f"{e['edits']} edits, {e['scored']} scored -> ~{e['total_seconds'] / 60:.1f} min"
        )
    print(f"  total ~{sum(e['total_seconds'] for e in estimates.values()) / 60:.1f} min")
    if args.estimate_only:
        return 0

    writer = ResultsWriter(args.output)
    run_path = writer.directory / "run.json"
    info = {
        "command": "hf-liveedit " + shlex.join(sys.argv[1:]),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backbone": args.backbone,
        "adapter": adapter,
        "data": described,
        "num_records": len(cases),
        "order": "file order" if shuffle is None else f"shuffled with seed {shuffle}",
        "editors": keys,
        "plans": {key: plan_to_json(plan) for key, plan in plans.items()},
        "estimate": estimates,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
    }
    if run_path.is_file():  # with --resume (checked by _check_inputs)
        previous = json.loads(run_path.read_text())
        info["previous_runs"] = previous.pop("previous_runs", []) + [previous]
    run_path.write_text(json.dumps(info, indent=1) + "\n")
    run_protocol(factories, cases, order, plans, writer, resume=args.resume)
    info["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_path.write_text(json.dumps(info, indent=1) + "\n")
    paths = write_report(writer.directory)
    print(f"results: {paths['table']}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "report":
        from hf_liveedit.evaluation.report import write_report

        results = check_path("report", args.results, "dir")
        if not (results / "chunks.jsonl").is_file():
            raise UsageError(f"report {results}: no chunks.jsonl (not a results folder)")

        with reading(f"report {results}", (FileNotFoundError,)):  # e.g. no chunk in the file
            paths = write_report(results, "hf-liveedit " + shlex.join(sys.argv[1:]))
        print("\n".join(f"{name}: {path}" for name, path in paths.items()))
        return 0
    return _run(args)
