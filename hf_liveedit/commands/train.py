"""``hf-liveedit train``: train a LiveEdit generator on MMEdit-format data.

Every setting is a field of one of three dataclasses, parsed with ``transformers.HfArgumentParser``:
:class:`TrainScriptArguments` (data, backbone, resuming), :class:`~hf_liveedit.LiveEditConfig`
(the adapter) and :class:`~hf_liveedit.trainers.LiveEditTrainingArguments` (every
``TrainingArguments`` option plus the loss weights). ``--config FILE.yaml`` gives settings by
field name; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
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
    "Train a LiveEdit generator (expert generator, feature extractors, sentinel) on editing data."
)


@dataclass
class TrainScriptArguments:
    """What to train on, from where; the adapter's and the training's settings are elsewhere."""

    backbone: str = field(
        default="default",
        metadata={
            "help": "'default' (the embedded LLaVA), 'tiny' (random tiny LLaVA, smoke tests) or a "
            "saved VLLM folder / Hub id."
        },
    )
    data: str = field(
        default="benchmark",
        metadata={
            "help": "'benchmark' (the packaged benchmark; folder via --image_root) or an MMEdit "
            "JSON file."
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder the data's image paths are relative to (benchmark: its folder)."},
    )
    split: str = field(default="train", metadata={"help": "Benchmark split to train on."})
    max_records: int | None = field(
        default=None, metadata={"help": "Train on the first N records only."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads."})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "Resume from this checkpoint folder, or 'last': the newest one in --output_dir."
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "Start from the weights of this adapter folder (e.g. a generator trained for "
            "another build of the same architecture) instead of random ones; it fixes the module "
            "sizes."
        },
    )
    export: str | None = field(
        default=None,
        metadata={"help": "Also write the final generator with float16 weights to this folder."},
    )

    def __post_init__(self) -> None:
        for name in ("max_records", "num_threads"):
            if getattr(self, name) is not None:
                check_number(f"--{name}", getattr(self, name), int, 1)
        if self.resume and self.init_from:
            raise UsageError(
                "--resume and --init_from exclude each other: a checkpoint has weights"
            )


#: This command's defaults where they differ from the dataclasses' (``--help`` shows them).
DEFAULTS = {
    "output_dir": None,  # ./liveedit-<backbone name>
    "per_device_train_batch_size": 8,
    "learning_rate": 1e-4,
    "logging_steps": 10,
    "save_total_limit": 3,
    "dataloader_drop_last": True,  # every step mixes a full batch of experts
    "cache_hidden_states": True,
    "disable_tqdm": False,
}


def argument_parser() -> argparse.ArgumentParser:
    """The command's flags, generated from the three dataclasses (with :data:`DEFAULTS`)."""
    from transformers import HfArgumentParser

    from hf_liveedit import LiveEditConfig
    from hf_liveedit.trainers import LiveEditTrainingArguments

    parser = HfArgumentParser(
        (TrainScriptArguments, LiveEditConfig, LiveEditTrainingArguments), add_help=False
    )
    parser.set_defaults(**DEFAULTS)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing to add: every flag comes from :func:`argument_parser` (``--config`` from the CLI).

    Args:
        parser: The sub-command parser.
    """


def split_settings(args: argparse.Namespace) -> tuple:
    """``(TrainScriptArguments, LiveEditConfig, LiveEditTrainingArguments)`` from parsed flags.

    Raises:
        UsageError: a value the dataclasses refuse (type, range, unknown scheduler, ...).
    """
    from hf_liveedit import LiveEditConfig
    from hf_liveedit.trainers import LiveEditTrainingArguments

    values = vars(args)
    if values.get("output_dir") is None:
        values["output_dir"] = f"liveedit-{Path(values.get('backbone', 'default')).name}"
    parsed = []
    for kind in (TrainScriptArguments, LiveEditConfig, LiveEditTrainingArguments):
        names = {f.name for f in fields(kind) if f.init}
        with reading("settings", (ValueError, TypeError)):
            parsed.append(kind(**{k: v for k, v in values.items() if k in names}))
    return tuple(parsed)


def _check_paths(script: TrainScriptArguments, output_dir: str) -> None:
    """Refuse missing inputs and uncreatable outputs before anything is loaded."""
    check_model_name("--backbone", script.backbone)
    if script.data != "benchmark":
        check_path("--data", script.data, "file")
    if script.image_root:
        check_path("--image_root", script.image_root, "dir")
    for name in ("init_from", "resume"):
        value = getattr(script, name)
        if value and value != "last":
            check_path(f"--{name}", value, "dir", containing=ADAPTER_CONFIGS)
    check_path("--output_dir", output_dir, "new_dir")
    if script.export:
        check_path("--export", script.export, "new_dir")


def _load_backbone(name: str):
    if name == "default":
        from hf_liveedit.embedded import load_default_backbone

        return load_default_backbone()
    if name == "tiny":
        from hf_liveedit.testing.tiny_models import tiny_llava

        return tiny_llava()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import hf_liveedit.embedded  # noqa: F401  (registers its vision tower with the Auto classes)

    # OSError: transformers' "not a folder nor a Hub repository" (a bug would be another type)
    with reading(f"--backbone {name}", (OSError,)):
        model = AutoModelForImageTextToText.from_pretrained(name)
        return model.eval(), AutoProcessor.from_pretrained(name)


def _load_records(script: TrainScriptArguments):
    from hf_liveedit.data import load_benchmark, load_mmedit, with_images
    from hf_liveedit.data.benchmark.paths import default_benchmark_dir

    if script.data == "benchmark":
        root = Path(script.image_root or default_benchmark_dir())
        dataset = load_benchmark(root, script.split, images=False)
    else:
        root = Path(script.image_root or Path(script.data).parent)
        dataset = load_mmedit(script.data)
    if script.max_records:
        dataset = dataset.select(range(min(script.max_records, len(dataset))))
    return with_images(dataset, root)


def run(args: argparse.Namespace) -> int:
    """Train, save the generator and its loss curve, print the final loss of each term.

    Args:
        args: Parsed flags.

    Returns:
        0 on success.
    """
    # what the user gave is checked first, the rest before the backbone loads: a mistake costs
    # seconds and writes nothing
    script, config, training_args = split_settings(args)
    _check_paths(script, training_args.output_dir)

    import json
    from dataclasses import asdict

    import torch
    from transformers.trainer_utils import get_last_checkpoint

    from hf_liveedit import LiveEditConfig, get_liveedit_model
    from hf_liveedit.trainers import LOSS_CURVE_NAME, LiveEditTrainer
    from hf_liveedit.trainers.export import export_generator

    if script.num_threads:
        torch.set_num_threads(script.num_threads)
    output_dir = Path(training_args.output_dir)
    resume = script.resume
    if resume == "last":
        resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume is None:
            raise UsageError(f"--resume: no checkpoint-* folder in {output_dir}")
    if resume or script.init_from:  # the saved adapter fixes the module sizes
        saved = resume or script.init_from
        with reading(f"{'--resume' if resume else '--init_from'} {saved}"):
            config, _ = LiveEditConfig.from_pretrained(saved)
    with reading(f"--data {script.data}"):
        dataset = _load_records(script)
    batch_size = training_args.per_device_train_batch_size
    # with drop_last, fewer records than a batch give no step at all (and, before this check,
    # an untrained generator saved as if trained)
    if training_args.dataloader_drop_last and len(dataset) < batch_size:
        raise UsageError(
            f"--per_device_train_batch_size {batch_size} is larger than the {len(dataset)} "
            "training records: no full batch to train on"
        )

    torch.manual_seed(training_args.seed)
    model, processor = _load_backbone(script.backbone)
    liveedit = get_liveedit_model(model, config, processor=processor)
    trainer = LiveEditTrainer(liveedit, args=training_args, train_dataset=dataset)
    if script.init_from:  # starting a generator for this backbone: another one is the point
        trainer.load_generator(script.init_from, allow_base_model_mismatch=True)
    parameters = list(liveedit.liveedit_modules.parameters())
    print(
        f"training {sum(p.numel() for p in parameters if p.requires_grad):,} of "
        f"{sum(p.numel() for p in parameters):,} LiveEdit parameters on {len(dataset)} records (layer {liveedit.liveedit_config.edit_layer} of "
        f"{liveedit.backbone.num_layers}, d_m {config.module_dim}); output: {output_dir}"
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(output_dir))
    # no entry when no step was logged (e.g. --logging_steps above --max_steps)
    last = next((entry for entry in reversed(trainer.state.log_history) if "loss" in entry), {})
    summary = {
        "steps": trainer.state.global_step,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "final_losses": {k: v for k, v in last.items() if k == "loss" or k.startswith("loss_")},
        "settings": {
            "script": asdict(script),
            "liveedit_config": config.to_dict(),
            "training_args": training_args.to_sanitized_dict(),
        },
        "loss_curve": str(output_dir / LOSS_CURVE_NAME),
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    if script.export:
        export_generator(liveedit, script.export)
        print(f"float16 generator written to {script.export}")
    print(
        json.dumps({k: summary[k] for k in ("steps", "train_runtime_s", "final_losses")}, indent=2)
    )
    print(f"generator: {output_dir}  loss curve: {summary['loss_curve']}")
    return 0
