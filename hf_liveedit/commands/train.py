"""``hf-liveedit train``: train a LiveEdit generator on MMEdit-format data.

Settings come from built-in defaults, then a YAML file (``--config``, keys named like the flags
with underscores), then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

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

#: Every setting and its default; YAML keys must be among these.
DEFAULTS: dict[str, Any] = {
    "backbone": "default",
    "data": "benchmark",
    "image_root": None,
    "split": "train",
    "max_records": None,
    "output_dir": None,
    "module_dim": 256,
    "rank": 4,
    "num_queries": 4,
    "num_heads": 8,
    "edit_layer": None,
    "expert_scale": None,
    "batch_size": 8,
    "max_steps": 1000,
    "learning_rate": 1e-4,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "save_steps": 100,
    "save_total_limit": 3,
    "logging_steps": 10,
    "seed": 0,
    "num_threads": None,
    "cache_hidden_states": True,
    "resume": None,
    "init_from": None,
    "export": None,
    "rel_weight": 1.0,
    "gen_weight": 1.0,
    "loc_weight": 1.0,
    "hard_routing_weight": 1.0,
    "soft_routing_weight": 1.0,
}

# flag -> (type, help); every flag defaults to "not given" so the YAML file can fill it.
_FLAGS: dict[str, tuple[Any, str]] = {
    "backbone": (
        str,
        "'default' (the embedded LLaVA), 'tiny' (random tiny LLaVA, smoke tests) or a saved "
        "VLLM folder / Hub id",
    ),
    "data": (
        str,
        "'benchmark' (the packaged benchmark; folder via --image-root) or an MMEdit JSON file",
    ),
    "image_root": (str, "folder the data's image paths are relative to (benchmark: its folder)"),
    "split": (str, "benchmark split to train on"),
    "max_records": (int, "train on the first N records only"),
    "output_dir": (
        str,
        "checkpoints, final generator and loss curve (default ./liveedit-<backbone>)",
    ),
    "module_dim": (int, "d_m of the generator and extractors"),
    "rank": (int, "rank r of each expert"),
    "num_queries": (int, "k, queries per routing feature"),
    "num_heads": (int, "cross-attention heads"),
    "edit_layer": (int, "decoder layer l_e (default: 2/3 of the depth)"),
    "expert_scale": (float, "scale c of U and V (default 1/(5 sqrt r))"),
    "batch_size": (int, "edit records per step"),
    "max_steps": (int, "optimizer steps"),
    "learning_rate": (float, "Adam(W) learning rate"),
    "lr_scheduler_type": (str, "transformers scheduler name (constant, linear, cosine, ...)"),
    "warmup_steps": (int, "scheduler warm-up steps"),
    "save_steps": (int, "checkpoint every N steps"),
    "save_total_limit": (int, "keep at most N checkpoints"),
    "logging_steps": (int, "log the loss terms every N steps"),
    "seed": (int, "random seed"),
    "num_threads": (int, "torch CPU threads"),
    "init_from": (
        str,
        "start from the weights of this adapter folder (e.g. a generator trained for another "
        "build of the same architecture) instead of random ones; it fixes the module sizes",
    ),
    "export": (str, "also write the final generator with float16 weights to this folder"),
    "rel_weight": (float, "weight of l_rel"),
    "gen_weight": (float, "weight of l_gen"),
    "loc_weight": (float, "weight of l_loc"),
    "hard_routing_weight": (float, "weight of l_hr"),
    "soft_routing_weight": (float, "weight of l_sr1 and l_sr2"),
}


#: The smallest value of each numeric setting (``None`` stays allowed where it is the default).
#: The module sizes and ``expert_scale`` are checked by :class:`~hf_liveedit.LiveEditConfig`.
_MINIMUM: dict[str, float] = {
    "max_records": 1,
    "edit_layer": 0,
    "batch_size": 1,
    "max_steps": 1,
    "learning_rate": 0,
    "warmup_steps": 0,
    "save_steps": 1,
    "save_total_limit": 1,
    "logging_steps": 1,
    "num_threads": 1,
    "rel_weight": 0,
    "gen_weight": 0,
    "loc_weight": 0,
    "hard_routing_weight": 0,
    "soft_routing_weight": 0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's flags.

    Args:
        parser: The sub-command's parser.
    """
    parser.add_argument("--config", help="YAML file of settings (flags given here override it)")
    for name, (kind, text) in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, type=kind, default=argparse.SUPPRESS, help=f"{text} [{DEFAULTS[name]}]"
        )
    parser.add_argument(
        "--cache-hidden-states",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="keep each row's layer-l_e output in memory so later epochs run only the layers "
        "above l_e (memory: rows x tokens x hidden size) [True]",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=argparse.SUPPRESS,
        help="resume from a checkpoint folder, or (no value) from the last one in --output-dir",
    )


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, the YAML file and the flags given, and check every setting.

    Args:
        args: Parsed flags (unset flags are absent).

    Returns:
        Every setting of :data:`DEFAULTS`.

    Raises:
        UsageError: the YAML file is missing, malformed or has keys that are not settings, or
            a setting has the wrong type or is out of range.
    """
    import yaml

    settings = dict(DEFAULTS)
    given = {k: v for k, v in vars(args).items() if k not in ("command", "_run", "config", "debug")}
    # each setting as the user wrote it, for the messages: the flag, or the file and its key
    labels = {name: "--" + name.replace("_", "-") for name in given}
    if getattr(args, "config", None):
        with reading(f"--config {args.config}", (OSError, UnicodeDecodeError, yaml.YAMLError)):
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {args.config}: expected a mapping of settings")
        unknown = sorted(map(str, set(loaded) - set(DEFAULTS)))
        if unknown:
            raise UsageError(
                f"--config {args.config}: unknown settings {unknown}; known: {sorted(DEFAULTS)}"
            )
        settings.update(loaded)
        labels = {**{name: f"--config {args.config}: {name}" for name in loaded}, **labels}
    settings.update(given)
    _check_settings(settings, labels)
    if settings["output_dir"] is None:
        settings["output_dir"] = f"liveedit-{Path(settings['backbone']).name}"
    return settings


def _check_settings(settings: dict[str, Any], labels: dict[str, str]) -> None:
    """Refuse a setting of the wrong type or out of range.

    One check for flags and YAML values alike (the YAML file skips argparse's types).

    Args:
        settings: Every setting.
        labels: How the user wrote each setting that is not a default (named in the message).
    """
    for name, value in settings.items():
        kind = bool if name == "cache_hidden_states" else _FLAGS.get(name, (str,))[0]
        label = labels.get(name, name)
        if value is None and DEFAULTS[name] is None:
            continue
        if kind is float and isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = settings[name] = float(value)
        if kind in (int, float):
            check_number(label, value, kind, _MINIMUM.get(name))
        elif not isinstance(value, kind):
            raise UsageError(f"{label}: expected a {kind.__name__}, got {value!r}")


def _check_paths(settings: dict[str, Any]) -> None:
    """Refuse missing inputs and uncreatable outputs before anything is loaded."""
    check_model_name("--backbone", settings["backbone"])
    if settings["data"] != "benchmark":
        check_path("--data", settings["data"], "file")
    if settings["image_root"]:
        check_path("--image-root", settings["image_root"], "dir")
    for name in ("init_from", "resume"):
        if settings[name] and settings[name] != "last":
            flag = "--" + name.replace("_", "-")
            check_path(flag, settings[name], "dir", containing=ADAPTER_CONFIGS)
    for name in ("output_dir", "export"):
        if settings[name]:
            check_path("--" + name.replace("_", "-"), settings[name], "new_dir")


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


def _load_records(settings: dict[str, Any]):
    from hf_liveedit.data import load_benchmark, load_mmedit, with_images
    from hf_liveedit.data.benchmark.paths import default_benchmark_dir

    if settings["data"] == "benchmark":
        root = Path(settings["image_root"] or default_benchmark_dir())
        dataset = load_benchmark(root, settings["split"], images=False)
    else:
        root = Path(settings["image_root"] or Path(settings["data"]).parent)
        dataset = load_mmedit(settings["data"])
    if settings["max_records"]:
        dataset = dataset.select(range(min(settings["max_records"], len(dataset))))
    return with_images(dataset, root)


def run(args: argparse.Namespace) -> int:
    """Train, save the generator and its loss curve, print the final loss of each term.

    Args:
        args: Parsed flags.

    Returns:
        0 on success.
    """
    # what the user gave is checked first (before torch is even imported), the rest before the
    # backbone loads: a mistake costs seconds and writes nothing
    settings = resolve_settings(args)
    _check_paths(settings)
    if settings["resume"] and settings["init_from"]:
        raise UsageError("--resume and --init-from exclude each other: a checkpoint has weights")

    import json

    import torch
    from transformers.trainer_utils import get_last_checkpoint

    from hf_liveedit import LiveEditConfig, get_liveedit_model
    from hf_liveedit.trainers import (
        LOSS_CURVE_NAME,
        LiveEditTrainer,
        LiveEditTrainingArguments,
    )
    from hf_liveedit.trainers.export import export_generator

    if settings["num_threads"]:
        torch.set_num_threads(settings["num_threads"])
    output_dir = Path(settings["output_dir"])
    resume = settings["resume"]
    if resume == "last":
        resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume is None:
            raise UsageError(f"--resume: no checkpoint-* folder in {output_dir}")
    if resume or settings["init_from"]:  # the saved adapter fixes the module sizes
        saved = resume or settings["init_from"]
        with reading(f"{'--resume' if resume else '--init-from'} {saved}"):
            config, _ = LiveEditConfig.from_pretrained(saved)
    else:
        with reading("settings", (ValueError, TypeError)):
            config = LiveEditConfig(
                module_dim=settings["module_dim"],
                rank=settings["rank"],
                num_queries=settings["num_queries"],
                num_heads=settings["num_heads"],
                edit_layer=settings["edit_layer"],
                expert_scale=settings["expert_scale"],
            )
    with reading("settings", (ValueError,)):  # e.g. an unknown --lr-scheduler-type
        training_args = LiveEditTrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=settings["batch_size"],
            max_steps=settings["max_steps"],
            learning_rate=settings["learning_rate"],
            lr_scheduler_type=settings["lr_scheduler_type"],
            warmup_steps=settings["warmup_steps"],
            save_steps=settings["save_steps"],
            save_total_limit=settings["save_total_limit"],
            logging_steps=settings["logging_steps"],
            seed=settings["seed"],
            # every step sees a full batch of experts to mix
            dataloader_drop_last=True,
            cache_hidden_states=settings["cache_hidden_states"],
            report_to=[],
            disable_tqdm=False,
            rel_weight=settings["rel_weight"],
            gen_weight=settings["gen_weight"],
            loc_weight=settings["loc_weight"],
            hard_routing_weight=settings["hard_routing_weight"],
            soft_routing_weight=settings["soft_routing_weight"],
        )
    with reading(f"--data {settings['data']}"):
        dataset = _load_records(settings)
    # with drop_last, fewer records than a batch give no step at all (and, before this check,
    # an untrained generator saved as if trained)
    if len(dataset) < settings["batch_size"]:
        raise UsageError(
            f"--batch-size {settings['batch_size']} is larger than the {len(dataset)} training "
            "records: no full batch to train on"
        )

    torch.manual_seed(settings["seed"])
    model, processor = _load_backbone(settings["backbone"])
    liveedit = get_liveedit_model(model, config, processor=processor)
    trainer = LiveEditTrainer(liveedit, args=training_args, train_dataset=dataset)
    if settings["init_from"]:  # starting a generator for this backbone: another one is the point
        trainer.load_generator(settings["init_from"], allow_base_model_mismatch=True)
    print(
        f"training {sum(p.numel() for p in liveedit.liveedit_modules.parameters()):,} LiveEdit "
        f"parameters on {len(dataset)} records (layer {liveedit.liveedit_config.edit_layer} of "
        f"{liveedit.backbone.num_layers}, d_m {config.module_dim}); output: {output_dir}"
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(output_dir))
    # no entry when no step was logged (e.g. --logging-steps above --max-steps)
    last = next((entry for entry in reversed(trainer.state.log_history) if "loss" in entry), {})
    summary = {
        "steps": trainer.state.global_step,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "final_losses": {k: v for k, v in last.items() if k == "loss" or k.startswith("loss_")},
        "settings": settings,
        "loss_curve": str(output_dir / LOSS_CURVE_NAME),
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    if settings["export"]:
        export_generator(liveedit, settings["export"])
        print(f"float16 generator written to {settings['export']}")
    print(
        json.dumps({k: summary[k] for k in ("steps", "train_runtime_s", "final_losses")}, indent=2)
    )
    print(f"generator: {output_dir}  loss curve: {summary['loss_curve']}")
    return 0
