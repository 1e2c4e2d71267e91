"""Train the default backbone's projector (the one part of it not taken from a registry package).

The package ships the result (``hf_liveedit/pretrained/default-backbone/``), so that every
machine assembles the same backbone; this is how that projector was made, for people who want to
rebuild it (``hf-liveedit train-projector``). Training on another machine gives another projector
(CPU kernels differ), hence another backbone, for which the packaged generator was not trained.

Output folder::

    projector.safetensors   the projector's weights (float32)
    projector.json          recipe, data sources and licences, held-out metrics, examples, timings
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .build import PROJECTOR_INFO, PROJECTOR_WEIGHTS, assemble, lite0_checkpoint
from .evaluation import generate_answers, name_exact_match, split_rows, summarize
from .language import dequantize_smollm2
from .projector import (
    Example,
    TurnEncoder,
    cpu_has_bf16_units,
    make_examples,
    token_accuracy,
    train_projector,
)
from .sources import SOURCES, CaptionedImage, copyright_licences, load_sources

logger = logging.getLogger(__name__)

TRAIN_STEPS = 150  # ~0.3 s per sequence on 2 cores: about 6 minutes
BATCH_SIZE = 8
LEARNING_RATE = 5e-3
MAX_GENERATED_NAMES = 400


@torch.no_grad()
def _vision_features(
    model, processor, records: list[CaptionedImage], path: Path, batch_size: int = 32
) -> torch.Tensor:
    """Vision-tower features of every record (fp16 on disk), reused when the records match."""
    keys = [f"{r.source}:{r.key}" for r in records]
    if path.is_file():
        cached = torch.load(path)
        if cached["keys"] == keys:
            return cached["features"].float()
    tower = model.model.vision_tower.to(memory_format=torch.channels_last)
    chunks = []
    for i in tqdm(range(0, len(records), batch_size), desc="vision features"):
        images = [r.load() for r in records[i : i + batch_size]]
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        chunks.append(
            tower(pixels.contiguous(memory_format=torch.channels_last)).last_hidden_state.half()
        )
    tower.to(memory_format=torch.contiguous_format)
    features = torch.cat(chunks)
    torch.save({"keys": keys, "features": features}, path)
    return features.float()


def train_default_projector(
    output_dir: str | Path, work_dir: str | Path, steps: int = TRAIN_STEPS
) -> Path:
    """Train the projector of the default backbone and write it with its card data.

    Reads the Debian packages of :data:`~hf_liveedit.embedded.sources.SOURCES` (fetched into
    the cache when not installed) and the PyPI packages of the build, which
    ``scripts/setup.sh`` installs. About 12 min on 2 cores.

    Args:
        output_dir: Where ``projector.safetensors`` and ``projector.json`` are written; pass it
            to :func:`~hf_liveedit.embedded.build_default_backbone` as ``projector_dir``.
        work_dir: Folder for reusable intermediates (the dequantized language model, the
            vision features).
        steps: Optimizer steps (the packaged projector: :data:`TRAIN_STEPS`).

    Returns:
        ``output_dir``.

    Raises:
        hf_liveedit.packages.MissingPackageError: Naming a missing package and how to get it.
    """
    output_dir, work = Path(output_dir), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        logger.info("%s done (%.0f s)", name, timings[name])

    torch.set_num_threads(os.cpu_count() or 1)
    records = load_sources()
    lite0 = lite0_checkpoint()
    smollm2_dir = dequantize_smollm2(work / "smollm2")
    lap("packages_and_language_model")

    torch.manual_seed(0)  # the projector's initialisation
    model, processor = assemble(smollm2_dir, lite0, projector_dir=None)
    features = _vision_features(model, processor, records, work / "vision_features.pt")
    lap("vision_features")

    train_rows, held_rows = split_rows(records)
    encoder = TurnEncoder(processor, model.config.image_seq_length)
    train_examples = make_examples(records, train_rows)
    losses = train_projector(
        model, encoder, features, train_examples, steps, BATCH_SIZE, lr=LEARNING_RATE
    )
    lap("projector_training")

    held_examples = make_examples(records, held_rows)
    seen_examples = make_examples(records, train_rows[:: max(1, len(train_rows) // len(held_rows))])
    metrics = {
        "held_out_token_accuracy": summarize(
            records, held_examples, token_accuracy(model, encoder, features, held_examples)
        ),
        # the same measure on (a sample of) training images: how much the projector fits
        "train_token_accuracy": summarize(
            records, seen_examples, token_accuracy(model, encoder, features, seen_examples)
        ),
    }
    names = [ex for ex in held_examples if ex.task == "name"][:MAX_GENERATED_NAMES]
    name_answers = generate_answers(model, processor, records, names)
    metrics["held_out_name_generation"] = name_exact_match(records, names, name_answers)
    lap("evaluation")

    info = {
        "n_images": len(records),
        "n_train_images": len(train_rows),
        "n_held_out_images": len(held_rows),
        "train_steps": steps,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "precision": "bf16 autocast" if cpu_has_bf16_units() else "float32",
        "final_train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "sources": source_rows(records),
        "metrics": metrics,
        "examples": _example_generations(model, processor, records, held_rows),
        "name_generations": [
            {"source": records[ex.row].source, "expected": ex.answer, "generated": answer}
            for ex, answer in zip(names, name_answers)
        ],
    }
    lap("examples")
    info["timings_s"] = timings
    write_projector(model, info, output_dir)
    return output_dir


def source_rows(records: list[CaptionedImage]) -> list[dict]:
    """Per image source: Debian package, image count, description and licences (for the card)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.source] = counts.get(record.source, 0) + 1
    return [
        {
            "source": source.name,
            "apt_package": source.apt_package,
            "images": counts[source.name],
            "description": source.description,
            "licences": copyright_licences(source),
        }
        for source in SOURCES.values()
        if counts.get(source.name)
    ]


def write_projector(model, info: dict, output_dir: str | Path) -> None:
    """Write a trained projector (``projector.safetensors``) and its info (``projector.json``).

    Args:
        model: The LLaVA whose ``multi_modal_projector`` was trained.
        info: Recipe, sources, metrics and timings (see :func:`train_default_projector`).
        output_dir: Target folder (created).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = model.model.multi_modal_projector.state_dict()
    save_file(
        {k: v.detach().float().contiguous() for k, v in state.items()},
        str(output_dir / PROJECTOR_WEIGHTS),
    )
    (output_dir / PROJECTOR_INFO).write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")


def _example_generations(
    model, processor, records: list[CaptionedImage], held_rows: list[int], per_source: int = 2
) -> list[dict]:
    """Both questions for a couple of held-out images of each source."""
    picked: dict[str, list[int]] = {}
    for row in held_rows:
        rows = picked.setdefault(records[row].source, [])
        if len(rows) < per_source and records[row].name:
            rows.append(row)
    examples = [
        Example(row, task, answer)
        for rows in picked.values()
        for row in rows
        for task, answer in (("name", records[row].name), ("caption", records[row].caption))
    ]
    answers = generate_answers(model, processor, records, examples, max_new_tokens=24)
    return [
        {
            "source": records[ex.row].source,
            "image": records[ex.row].key,
            "task": ex.task,
            "expected": ex.answer,
            "generated": answer,
        }
        for ex, answer in zip(examples, answers)
    ]
