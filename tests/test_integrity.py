"""Loads check what they read, and every refusal names the file and what is wrong with it.

The generator's SHA-256 is verified (with or without experts), files of a newer format, of
another PEFT method, corrupt, truncated or incomplete ones are refused, lossy dtype casts are
announced. After a refusal the base model carries no hook and a repository loaded into keeps
its edits.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing
from safetensors.torch import load_file, save_file

from hf_liveedit import LiveEditModel
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

CONFIG, GENERATOR = "liveedit_config.json", "generator.safetensors"
EXPERTS, EDITS = "experts.safetensors", "edits.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def edited_model(**config: object) -> LiveEditModel:
    liveedit = make_liveedit("llava", expert_scale=50.0, **config)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."], [TARGET, "Paris"])
    return liveedit


@pytest.fixture(scope="module")
def saved_once(tmp_path_factory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("saved") / "adapter"
    liveedit = edited_model()
    liveedit.save_pretrained(folder)
    return folder, liveedit.edits


@pytest.fixture
def adapter(saved_once, tmp_path) -> Path:
    """A fresh copy of a saved adapter (config, generator, two experts) to damage."""
    return Path(shutil.copytree(saved_once[0], tmp_path / "adapter"))


@pytest.fixture(scope="module")
def receiver() -> LiveEditModel:
    """A model with the adapter's generator and one edit of its own, that refusals must keep."""
    liveedit = edited_model()
    liveedit.clear_edits()
    liveedit.add_edit(tiny_image(3), PROMPT, "kept")
    return liveedit


def hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def load(folder: Path, **kwargs) -> LiveEditModel:
    base, processor = tiny_llava()
    return LiveEditModel.from_pretrained(base, folder, processor=processor, **kwargs)


def refused(folder: Path, match: str, error: type[Exception] = ValueError, **kwargs) -> None:
    """``from_pretrained`` raises ``error`` matching ``match`` and leaves no hook on the model."""
    base, processor = tiny_llava()
    before = hooks(base)
    with pytest.raises(error, match=match):
        LiveEditModel.from_pretrained(base, folder, processor=processor, **kwargs)
    assert hooks(base) == before


def refused_by_load_experts(receiver: LiveEditModel, folder: Path, match: str) -> None:
    """``load_experts`` raises ``ValueError`` matching ``match``; the repository is unchanged."""
    with pytest.raises(ValueError, match=match):
        receiver.load_experts(folder)
    assert [record.target for record in receiver.edits] == ["kept"]


def change_json(path: Path, change: Callable[[dict], None]) -> None:
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def named(path: Path, what: str) -> str:
    """A pattern for a message that names ``path`` and then says ``what``."""
    return f"{re.escape(str(path))}.*{what}"


@pytest.mark.parametrize("load_experts", [True, False])
def test_a_flipped_byte_in_the_generator_is_refused(adapter, load_experts):
    path = adapter / GENERATOR
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # in the last weight: the file still parses
    path.write_bytes(bytes(data))
    refused(adapter, named(path, "hashes to .*generator_sha256"), load_experts=load_experts)
    change_json(adapter / CONFIG, lambda config: config.pop("generator_sha256"))
    assert len(load(adapter, load_experts=False).liveedit_modules.state_dict())  # not recorded


@pytest.mark.parametrize("name", [CONFIG, EDITS])
def test_a_newer_format_version_is_refused_and_older_ones_accepted(adapter, receiver, name):
    path = adapter / name
    for version in (2, "1", None):
        change_json(path, lambda payload, version=version: payload.update(format_version=version))
        refused(adapter, named(path, f"format_version {re.escape(repr(version))}"))
        if name == EDITS:
            refused_by_load_experts(receiver, adapter, named(path, "format_version"))
    change_json(path, lambda payload: payload.update(format_version=0))
    assert len(load(adapter).edits) == 2
    change_json(path, lambda payload: payload.pop("format_version"))  # saved before versions
    assert len(load(adapter).edits) == 2


def test_another_peft_type_is_refused(adapter):
    legacy = adapter / "adapter_config.json"  # a PEFT adapter's config, under PEFT's name
    (adapter / CONFIG).rename(legacy)
    change_json(legacy, lambda config: config.update(peft_type="LORA"))
    refused(adapter, named(legacy, "'LORA' adapter, not a LiveEdit one"))


def test_a_lossy_dtype_cast_is_announced(adapter, saved_once):
    path = adapter / GENERATOR
    save_file({k: v.double() for k, v in load_file(str(path)).items()}, str(path))
    with pytest.warns(UserWarning, match=named(path, "float64 tensors.*float32 \\(module_dtype")):
        loaded = load(adapter)  # float64 holds float32 exactly: the hash still matches
    assert loaded.edits == saved_once[1]
    half = edited_model(expert_dtype="float16")
    with pytest.warns(UserWarning, match=named(adapter / EXPERTS, "float32.*float16 \\(expert_")):
        half.load_experts(adapter)
    assert half.edits == saved_once[1]


def test_an_exact_dtype_cast_is_silent(tmp_path):
    """float16 weights loaded into float32 modules (as the packaged generator is stored)."""
    liveedit = make_liveedit("llava")
    with torch.no_grad():
        for tensor in liveedit.liveedit_modules.state_dict().values():
            tensor.copy_(tensor.half())
    liveedit.save_pretrained(tmp_path)
    path = tmp_path / GENERATOR
    save_file({k: v.half() for k, v in load_file(str(path)).items()}, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load(tmp_path)
    assert loaded.generator_sha256() == liveedit.generator_sha256()


@pytest.mark.parametrize("lost", [EDITS, EXPERTS])
def test_experts_without_their_metadata_or_the_reverse_are_refused(adapter, receiver, lost):
    (adapter / lost).unlink()
    kept = EXPERTS if lost == EDITS else EDITS
    message = named(adapter / kept, f"has no {re.escape(lost)} beside it")
    refused(adapter, message)
    refused_by_load_experts(receiver, adapter, message)
    assert len(load(adapter, load_experts=False).edits) == 0  # the generator alone still loads


def test_duplicate_edit_ids_are_refused(adapter, receiver):
    def repeat(meta: dict) -> None:
        meta["edits"][1]["id"] = meta["edits"][0]["id"]

    change_json(adapter / EDITS, repeat)
    message = named(adapter / EDITS, "edit ids .* more than once")
    refused(adapter, message)
    refused_by_load_experts(receiver, adapter, message)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_tensor(path: Path) -> None:
    tensors = load_file(str(path))
    del tensors["phi"]
    save_file(tensors, str(path))


def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return lambda path: change_json(path, change)


#: case: (file damaged, how, what the message says); the message names the damaged file.
CORRUPTIONS = {
    "truncated generator": (GENERATOR, truncate, "not a readable safetensors file"),
    "truncated experts": (EXPERTS, truncate, "not a readable safetensors file"),
    "truncated config": (CONFIG, truncate, "not valid JSON"),
    "truncated edits": (EDITS, truncate, "not valid JSON"),
    "config not an object": (CONFIG, lambda p: p.write_text("[]"), "JSON list, expected an object"),
    "config without fingerprint": (
        CONFIG,
        edit(lambda config: config.pop("base_model_fingerprint")),
        "lacks the keys \\['base_model_fingerprint'\\]",
    ),
    "config with a bad value": (CONFIG, edit(lambda config: config.update(rank="4")), "rank"),
    "edits without their list": (
        EDITS,
        edit(lambda meta: meta.pop("edits")),
        "lacks the keys \\['edits'\\]",
    ),
    "malformed edit record": (
        EDITS,
        edit(lambda meta: meta["edits"][0].pop("prompt")),
        "malformed edit record",
    ),
    "a tensor missing": (EXPERTS, drop_tensor, "does not match edits.json.*lacks tensors"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_file_is_reported_with_its_path(adapter, receiver, case):
    name, corrupt, what = CORRUPTIONS[case]
    corrupt(adapter / name)
    refused(adapter, named(adapter / name, what))
    if name in (EDITS, EXPERTS):
        refused_by_load_experts(receiver, adapter, named(adapter / name, what))


def test_experts_and_edits_of_different_saves_are_refused(adapter, receiver):
    change_json(adapter / EDITS, lambda meta: meta["edits"].pop())
    message = named(adapter / EXPERTS, "holds 2 experts, but edits.json lists 1 edits")
    refused(adapter, message)
    refused_by_load_experts(receiver, adapter, message)
