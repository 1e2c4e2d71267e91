"""``hf-liveedit train-router``: the routing stage on top of a trained generator."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from hf_liveedit.commands import (
    ADAPTER_CONFIGS,
    UsageError,
    check_model_name,
    check_number,
    check_path,
    reading,
)

HELP = (
    "Train a generator's router (feature extractors and sentinel) against every training edit "
    "at once, so that it finds the right edit among thousands (beyond the paper)."
)


@dataclass
class TrainRouterArguments:
    """What to train and where the result goes."""

    output_dir: str = field(
        metadata={"help": "Adapter folder to write (float16 weights, like the packaged one)."}
    )
    generator: str | None = field(
        default=None,
        metadata={"help": "Adapter folder whose router to train (default: the packaged one)."},
    )
    backbone: str = field(
        default="default",
        metadata={"help": "'default' (the embedded LLaVA) or a saved VLLM folder."},
    )
    benchmark_dir: str | None = field(
        default=None, metadata={"help": "Benchmark folder (default: the cache's)."}
    )
    split: str = field(default="train", metadata={"help": "Benchmark split to train on."})
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Entities of the split held out of training, for the diagnostics printed "
            "before and after (the test split is never used)."
        },
    )
    states_cache: str | None = field(
        default=None,
        metadata={"help": "File to keep the frozen model's layer-l_e states in between runs."},
    )
    max_records: int | None = field(default=None, metadata={"help": "Use the first N records."})


def argument_parser() -> argparse.ArgumentParser:
    """The command's flags, parsed from :class:`TrainRouterArguments` and the stage's settings."""
    from transformers import HfArgumentParser

    from hf_liveedit.trainers.routing_stage import RoutingStageArguments

    return HfArgumentParser((TrainRouterArguments, RoutingStageArguments), add_help=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing to add: every flag comes from :func:`argument_parser`.

    Args:
        parser: The sub-command parser.
    """


def _split_by_entity(entities: list[str], fraction: float) -> tuple[list[int], list[int]]:
    """Rows of training entities and of held-out entities (every ``1/fraction``-th entity)."""
    names = sorted(set(entities))
    every = max(1, round(1 / fraction)) if fraction > 0 else 0
    held = {name for i, name in enumerate(names) if every and i % every == every - 1}
    train = [i for i, name in enumerate(entities) if name not in held]
    return train, [i for i, name in enumerate(entities) if name in held]


def _validation_rows(
    entities: list[str], held_rows: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """Held-out rows as ``(probed, same_picture, unedited)``.

    The first half of the held-out entities are probed: their records are stored, except the
    last record of each entity with two or more (``same_picture``: another relation on a picture
    that carries stored edits); the other half are never edited (``unedited`` neighbours).
    """
    names = sorted({entities[row] for row in held_rows})
    probed_names = set(names[: len(names) // 2])
    probed, same_picture, unedited = [], [], []
    by_entity: dict[str, list[int]] = {}
    for row in held_rows:
        by_entity.setdefault(entities[row], []).append(row)
    for name, rows in by_entity.items():
        if name not in probed_names:
            unedited += rows
        elif len(rows) > 1:
            probed += rows[:-1]
            same_picture.append(rows[-1])
        else:
            probed += rows
    return probed, same_picture, unedited


def _check_script(args: argparse.Namespace) -> TrainRouterArguments:
    """The command's own arguments, checked before anything is imported or loaded."""
    names = set(TrainRouterArguments.__dataclass_fields__)
    script = TrainRouterArguments(**{k: v for k, v in vars(args).items() if k in names})
    if not 0 <= script.validation_fraction < 1:  # NaN too
        raise UsageError(
            f"--validation_fraction: expected a number in [0, 1), got {script.validation_fraction}"
        )
    if script.max_records is not None:
        check_number("--max_records", script.max_records, int, 1)
    check_model_name("--backbone", script.backbone)
    if script.generator:
        check_path("--generator", script.generator, "dir", containing=ADAPTER_CONFIGS)
    if script.benchmark_dir:
        check_path("--benchmark_dir", script.benchmark_dir, "dir")
    check_path("--output_dir", script.output_dir, "new_dir")
    if script.states_cache:
        check_path("--states_cache", Path(script.states_cache).parent, "new_dir")
    return script


def run(args: argparse.Namespace) -> int:
    """Run the routing stage, print diagnostics before and after, write the adapter.

    Args:
        args: Parsed flags.

    Returns:
        Exit status.
    """
    script = _check_script(args)

    import json

    import torch

    from hf_liveedit import LiveEditModel
    from hf_liveedit.commands.train import _load_backbone
    from hf_liveedit.data import format_prompt, load_benchmark
    from hf_liveedit.pretrained import default_generator_dir
    from hf_liveedit.trainers.export import export_generator
    from hf_liveedit.trainers.routing_stage import (
        ROUTING_INPUTS,
        RoutingStageArguments,
        RoutingStates,
        choose_image_key_threshold,
        collect_routing_states,
        routing_diagnostics,
        set_image_key_threshold,
        train_routing,
        use_image_key,
    )

    stage_names = set(RoutingStageArguments.__dataclass_fields__)
    with reading("settings", (ValueError,)):  # its __post_init__ range-checks
        stage = RoutingStageArguments(**{k: v for k, v in vars(args).items() if k in stage_names})
    with reading(f"--benchmark_dir {script.benchmark_dir or '(default)'}"):
        dataset = load_benchmark(script.benchmark_dir, script.split)
    if script.max_records:
        dataset = dataset.select(range(min(script.max_records, len(dataset))))
    model, processor = _load_backbone(script.backbone)
    processor.tokenizer.padding_side = "left"
    generator = script.generator or default_generator_dir()
    with reading(f"--generator {generator}"):  # e.g. a generator made for another backbone
        liveedit = LiveEditModel.from_pretrained(model, generator, processor=processor)

    cache = Path(script.states_cache) if script.states_cache else None
    if cache is not None and cache.is_file():
        saved = torch.load(cache)
        inputs = {name: RoutingStates(**saved[name]) for name in ROUTING_INPUTS}
    else:
        inputs = {
            name: collect_routing_states(
                liveedit,
                dataset[image_field],
                [format_prompt(q) for q in dataset[question_field]],
                desc=f"layer-l_e states: {name}",
            )
            for name, (image_field, question_field) in ROUTING_INPUTS.items()
        }
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({name: vars(states) for name, states in inputs.items()}, cache)

    train_rows, held_rows = _split_by_entity(dataset["entity"], script.validation_fraction)
    train_inputs = {name: states.select(train_rows) for name, states in inputs.items()}
    probed, same_picture, unedited = _validation_rows(dataset["entity"], held_rows)
    # validation: every training edit and the probed held-out ones stored; held-out entities
    # never edited are neighbours; one record of each probed entity is held back and asked on
    # the same picture as its entity's stored edits (another relation)
    edited = train_rows + probed

    def diagnostics() -> dict:
        report = routing_diagnostics(liveedit, inputs, edited, unedited, same_picture)
        alone = routing_diagnostics(liveedit, inputs, probed) if probed else {}
        return {"all_stored": report, "held_out_only_stored": alone}

    before = diagnostics() if held_rows else {}
    print(json.dumps({"before": before}, indent=1))
    sweep = None
    if stage.hard_routing == "image_key":
        use_image_key(liveedit, train_inputs["edit"], stage.image_key_positions)
        if stage.image_key_threshold is None:
            # false keeps of held-out entities' pictures and of every locality picture against
            # the training edits; the test split is never looked at
            probes = {"neighbour": inputs["edit"].select(held_rows), "locality": inputs["locality"]}
            threshold, sweep = choose_image_key_threshold(
                liveedit, train_inputs["edit"], probes, stage.max_false_keep_rate
            )
        else:
            threshold = stage.image_key_threshold
            set_image_key_threshold(liveedit, threshold)
        print(f"image-key filter: threshold {threshold}")
    logs = train_routing(liveedit, train_inputs, stage)
    after = diagnostics() if held_rows else {}
    print(json.dumps({"after": after}, indent=1))

    liveedit.liveedit_config.base_model_name_or_path = None
    export_generator(liveedit, script.output_dir)
    summary = {
        "generator": script.generator or "the packaged generator",  # as given: no local paths
        "records": len(dataset),
        "train_records": len(train_rows),
        "held_out_records": len(held_rows),
        "settings": vars(stage),
        "logs": logs,
        "diagnostics_before": before,
        "diagnostics_after": after,
        "image_key_threshold_sweep": sweep,
    }
    Path(script.output_dir, "routing_stage.json").write_text(json.dumps(summary, indent=1))
    print(f"adapter with the trained router: {script.output_dir}")
    return 0
