"""The embedded default backbone: packaged projector, reproducible assembly, packaged generator.

The assembly test builds the real backbone from the pinned registry packages that
``scripts/setup.sh`` installs (about a minute on 2 cores) and checks that its weights hash to the
value the packaged generator was trained on: the same backbone on every machine.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_liveedit import LiveEditModel
from hf_liveedit.embedded import (
    build_default_backbone,
    load_default_backbone,
    packaged_projector_dir,
)
from hf_liveedit.embedded.build import BUILD_INFO, PROJECTOR_INFO, PROJECTOR_WEIGHTS
from hf_liveedit.pretrained import default_generator_dir

PROJECTOR_SHAPES = {
    "linear_1.weight": (576, 1280),
    "linear_1.bias": (576,),
    "linear_2.weight": (576, 576),
    "linear_2.bias": (576,),
}


def packaged_sha256() -> str:
    return json.loads((packaged_projector_dir() / PROJECTOR_INFO).read_text())["model_sha256"]


def test_packaged_projector_and_generator_name_the_same_backbone():
    state = load_file(str(packaged_projector_dir() / PROJECTOR_WEIGHTS))
    assert {name: tuple(value.shape) for name, value in state.items()} == PROJECTOR_SHAPES
    assert all(value.dtype == torch.float32 and value.isfinite().all() for value in state.values())
    generator = json.loads((default_generator_dir() / "liveedit_config.json").read_text())
    assert len(packaged_sha256()) == 64
    assert generator["base_model_sha256"] == packaged_sha256()


def test_packaged_files_name_no_local_paths():
    """What ships (cards, configs, training records) must not point into a developer's machine."""
    for folder in (default_generator_dir(), packaged_projector_dir()):
        for path in folder.iterdir():
            if path.suffix in (".md", ".json", ".yaml"):
                text = path.read_text()
                for prefix in ("/work/", "/tmp/", "/root/", "/home/", "C:\\"):
                    assert prefix not in text, f"{path.name} names a local path ({prefix})"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache with the default backbone assembled from the packaged parts."""
    cache = tmp_path_factory.mktemp("hf_liveedit_cache")
    build_default_backbone(cache)
    return cache


def test_the_build_assembles_the_packaged_backbone_bit_for_bit(cache):
    info = json.loads((cache / "model" / BUILD_INFO).read_text())
    assert info["projector"] == "packaged"
    assert info["model_sha256"] == info["expected_model_sha256"] == packaged_sha256()
    assert packaged_sha256() in (cache / "model" / "README.md").read_text()
    # what the demo does: load the saved folder, then the packaged generator onto it (refused
    # if the weights were not the ones it was trained on)
    model, processor = load_default_backbone(cache)
    liveedit = LiveEditModel.from_pretrained(model, default_generator_dir(), processor=processor)
    assert liveedit.base_model_sha256() == packaged_sha256()


def test_a_backbone_with_another_projector_is_refused_by_the_packaged_generator(cache, tmp_path):
    state = load_file(str(packaged_projector_dir() / PROJECTOR_WEIGHTS))
    state["linear_2.bias"] = state["linear_2.bias"] + 1e-3
    save_file(state, str(tmp_path / PROJECTOR_WEIGHTS))
    (tmp_path / PROJECTOR_INFO).write_text((packaged_projector_dir() / PROJECTOR_INFO).read_text())
    build_default_backbone(cache, force=True, projector_dir=tmp_path)
    try:
        info = json.loads((cache / "model" / BUILD_INFO).read_text())
        assert info["projector"] == str(tmp_path) and info["expected_model_sha256"] is None
        assert info["model_sha256"] != packaged_sha256()
        model, processor = load_default_backbone(cache)
        with pytest.raises(ValueError, match="hash to"):
            LiveEditModel.from_pretrained(model, default_generator_dir(), processor=processor)
    finally:  # leave the module's cache as the other tests expect it
        build_default_backbone(cache, force=True)
