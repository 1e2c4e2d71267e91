"""Files PEFT-aware tools do not misread, PEFT-shaped loading, the Hub, and LiveEditTrainer's
Hub, card, ``training_args.bin`` and repeatable evaluation.

Hub calls never reach the network: ``HfApi.create_repo`` / ``upload_folder`` / ``file_exists``
and ``huggingface_hub.snapshot_download`` are redirected to local folders (one per repository
and revision) by the ``hub`` fixture, which records every call.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import inspect
import json
import shutil
import types
import uuid
from pathlib import Path

import huggingface_hub
import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing
from hf_liveedit.trainers import LiveEditTrainer, LiveEditTrainingArguments
from huggingface_hub import HfApi, ModelCard
from test_trainer import make_records
from test_trainer import training_args as trainer_args

from hf_liveedit import LiveEditModel
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

HUB_BASE = "llava-hf/llava-interleave-qwen-0.5b-hf"  # a Hub id, only written into cards
EXPERT_FILES = {"experts.safetensors", "edits.json"}


pytestmark = pytest.mark.usefixtures("one_thread")


class FakeHub:
    """Hub repositories as local folders: ``root/<repo_id>/<revision>/``."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, dict]] = []

    def folder(self, repo_id: str, revision: str | None = None) -> Path:
        return self.root / "repos" / repo_id / (revision or "main")

    def files(self, repo_id: str, revision: str | None = None) -> set[str]:
        folder = self.folder(repo_id, revision)
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    def named(self, name: str) -> list[dict]:
        return [kwargs for call, kwargs in self.calls if call == name]


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub")

    def create_repo(self, repo_id, *, private=None, exist_ok=False, token=None, **kwargs):
        fake.calls.append(("create_repo", {"repo_id": repo_id, "private": private}))
        fake.folder(repo_id).mkdir(parents=True, exist_ok=True)
        return types.SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, revision=None, **kwargs):
        fake.calls.append(("upload_folder", {"repo_id": repo_id, "revision": revision, **kwargs}))
        target = fake.folder(repo_id, revision) / (kwargs.get("path_in_repo") or "")
        target.mkdir(parents=True, exist_ok=True)
        for pattern in kwargs.get("delete_patterns") or []:
            for path in target.glob(pattern):
                path.unlink()
        ignored = kwargs.get("ignore_patterns") or []
        for path in Path(folder_path).rglob("*"):
            name = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(name, p) for p in ignored):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / name)
        if kwargs.get("run_as_future"):
            future = concurrent.futures.Future()
            future.set_result("commit")
            return future
        return "commit"

    def file_exists(self, repo_id, filename, *, revision=None, **kwargs):
        return (fake.folder(repo_id, revision) / filename).is_file()

    signature = inspect.signature(huggingface_hub.snapshot_download)

    def snapshot_download(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs).arguments
        fake.calls.append(("snapshot_download", arguments))
        source = fake.folder(arguments["repo_id"], arguments.get("revision"))
        if not source.is_dir():
            raise FileNotFoundError(f"no repository {arguments['repo_id']}")
        snapshot = fake.root / "cache" / uuid.uuid4().hex
        snapshot.mkdir(parents=True)
        for path in source.rglob("*"):
            name = path.relative_to(source).as_posix()
            patterns = arguments.get("allow_patterns")
            if path.is_file() and (patterns is None or name in patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, snapshot / name)
        return str(snapshot)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "file_exists", file_exists)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.chdir(tmp_path)  # repo ids must not name local folders
    return fake


def edited_model() -> LiveEditModel:
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."], [TARGET, "Paris"])
    return liveedit


def load(model_id, **kwargs) -> LiveEditModel:
    base, processor = tiny_llava()
    return LiveEditModel.from_pretrained(base, model_id, processor=processor, **kwargs)


def logits(model: LiveEditModel) -> torch.Tensor:
    inputs = model.build_inputs([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."])
    with torch.no_grad():
        return model(**inputs).logits


def metadata(card_path: Path):
    return ModelCard.load(card_path).data


# --- files that PEFT-aware tools do not misread ------------------------------------------------


def test_peft_and_transformers_do_not_take_the_folder_for_a_peft_adapter(tmp_path):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForImageTextToText

    edited_model().save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()
    base, _ = tiny_llava()
    attempts = {
        "PeftConfig.from_pretrained": lambda: PeftConfig.from_pretrained(str(tmp_path)),
        "PeftModel.from_pretrained": lambda: PeftModel.from_pretrained(base, str(tmp_path)),
        "load_adapter": lambda: base.load_adapter(str(tmp_path)),
        "AutoModelForImageTextToText": lambda: AutoModelForImageTextToText.from_pretrained(
            str(tmp_path)
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(Exception) as caught:  # an ordinary "not my kind of folder"
            attempt()
        assert not isinstance(caught.value, KeyError), name
        assert "LIVEEDIT" not in str(caught.value), name


def test_a_folder_of_the_legacy_layout_loads_and_a_new_save_drops_the_old_name(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "liveedit_config.json").read_text())
    legacy = {**config, "peft_type": "LIVEEDIT"}
    del legacy["hf_liveedit_version"], legacy["inference_mode"]  # not written then
    (tmp_path / "adapter_config.json").write_text(json.dumps(legacy))
    (tmp_path / "liveedit_config.json").unlink()
    loaded = load(tmp_path)
    assert loaded.edits == liveedit.edits
    loaded.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "liveedit_config.json" in names and "adapter_config.json" not in names


def test_the_packaged_generator_folder_is_in_the_new_layout():
    from hf_liveedit.pretrained import default_generator_dir

    folder = default_generator_dir()
    assert (folder / "liveedit_config.json").is_file()
    assert not (folder / "adapter_config.json").exists()
    config = json.loads((folder / "liveedit_config.json").read_text())
    assert "peft_type" not in config and config["hf_liveedit_version"]
    card = (folder / "README.md").read_text()
    for text in (card, json.dumps(config)):
        assert "/root" not in text and "/tmp" not in text and "/home" not in text
    data = metadata(folder / "README.md")
    assert data.license and data.pipeline_tag == "image-text-to-text"
    assert data.library_name == "hf-liveedit" and data.base_model is None  # a local backbone


# --- PEFT-shaped loading -----------------------------------------------------------------------


def test_from_pretrained_loads_for_inference_unless_trainable(tmp_path, capsys):
    edited_model().save_pretrained(tmp_path)
    frozen = load(tmp_path)
    assert frozen.liveedit_config.inference_mode and not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = load(tmp_path, is_trainable=True)
    assert not trainable.liveedit_config.inference_mode
    count, total = trainable.get_nb_trainable_parameters()
    assert count == sum(p.numel() for p in trainable.liveedit_modules.parameters()) > 0
    trainable.print_trainable_parameters()
    assert capsys.readouterr().out.startswith(f"trainable params: {count:,d} || all params: ")
    assert trainable.get_base_model() is trainable.base_model
    frozen.save_pretrained(tmp_path / "again")  # the mode is recorded
    assert json.loads((tmp_path / "again" / "liveedit_config.json").read_text())["inference_mode"]


def test_from_pretrained_of_a_local_subfolder(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path / "adapters" / "llava")
    assert load(tmp_path / "adapters", subfolder="llava").edits == liveedit.edits
    with pytest.raises(ValueError, match="holds no LiveEdit adapter"):
        load(tmp_path / "adapters", subfolder="other")


# --- model cards -------------------------------------------------------------------------------


def test_a_hub_base_model_is_named_and_a_local_path_never_written(tmp_path):
    liveedit = edited_model()
    liveedit.liveedit_config.base_model_name_or_path = HUB_BASE
    liveedit.save_pretrained(tmp_path / "hub-base")
    data = metadata(tmp_path / "hub-base" / "README.md")
    assert data.base_model == HUB_BASE and data.base_model_relation == "adapter"
    assert f"base_model:adapter:{HUB_BASE}" in data.tags
    config = json.loads((tmp_path / "hub-base" / "liveedit_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_BASE

    local = tmp_path / "my-models" / "llava"
    local.mkdir(parents=True)
    liveedit.liveedit_config.base_model_name_or_path = str(local)
    liveedit.save_pretrained(tmp_path / "local-base")
    for name in ("README.md", "liveedit_config.json", "edits.json"):
        assert str(tmp_path) not in (tmp_path / "local-base" / name).read_text(), name
    data = metadata(tmp_path / "local-base" / "README.md")
    assert data.base_model is None and not any("base_model:" in tag for tag in data.tags)


# --- the Hub -----------------------------------------------------------------------------------


def test_push_and_pull_an_adapter_with_revision_and_token(hub, tmp_path):
    liveedit = edited_model()
    liveedit.liveedit_config.base_model_name_or_path = HUB_BASE
    liveedit.push_to_hub("me/llava-edits", private=True, revision="v1", metrics={"Rel": 90.0})
    assert hub.files("me/llava-edits", "v1") == {
        "liveedit_config.json",
        "generator.safetensors",
        "experts.safetensors",
        "edits.json",
        "README.md",
    }
    assert hub.named("create_repo") == [{"repo_id": "me/llava-edits", "private": True}]
    card = (hub.folder("me/llava-edits", "v1") / "README.md").read_text()
    assert '"me/llava-edits"' in card and "Rel: 90.00" in card and "/tmp" not in card
    assert metadata(hub.folder("me/llava-edits", "v1") / "README.md").base_model == HUB_BASE

    # load_experts=False: the expert files are not even downloaded
    bare = load("me/llava-edits", revision="v1", token="hf_secret", load_experts=False)
    (download,) = hub.named("snapshot_download")
    assert download["revision"] == "v1" and download["token"] == "hf_secret"
    assert not EXPERT_FILES & set(download["allow_patterns"])
    assert len(bare.edits) == 0 and bare.generator_sha256() == liveedit.generator_sha256()

    loaded = load("me/llava-edits", revision="v1", token="hf_secret")
    assert EXPERT_FILES <= set(hub.named("snapshot_download")[-1]["allow_patterns"])
    assert loaded.edits == liveedit.edits
    liveedit.liveedit_modules.requires_grad_(False)  # like with like (loaded for inference)
    assert torch.equal(logits(loaded), logits(liveedit))


def test_a_push_replaces_a_legacy_config_in_the_repository(hub):
    legacy = hub.folder("me/old")
    legacy.mkdir(parents=True)
    (legacy / "adapter_config.json").write_text('{"peft_type": "LIVEEDIT"}')
    edited_model().push_to_hub("me/old")
    assert "adapter_config.json" not in hub.files("me/old")
    assert hub.named("upload_folder")[0]["delete_patterns"] == ["adapter_config.json"]


def test_an_experts_only_repository_is_pushed_and_pulled(hub):
    liveedit = edited_model()
    liveedit.push_experts_to_hub("me/edits", token="hf_write", private=False)
    assert hub.files("me/edits") == {*EXPERT_FILES, "README.md"}
    card = (hub.folder("me/edits") / "README.md").read_text()
    assert "2 edit(s) stored as LiveEdit experts" in card and liveedit.generator_sha256() in card
    data = metadata(hub.folder("me/edits") / "README.md")
    assert "liveedit-experts" in data.tags and data.pipeline_tag == "image-text-to-text"

    user = make_liveedit("llava", expert_scale=50.0)  # the same generator, no edits
    rig_routing(user, keep=True)
    user.load_experts("me/edits", revision="main", token="hf_read")
    download = hub.named("snapshot_download")[-1]
    assert set(download["allow_patterns"]) == EXPERT_FILES
    assert download["token"] == "hf_read" and download["revision"] == "main"
    assert user.edits == liveedit.edits
    assert torch.equal(logits(user), logits(liveedit))


def test_experts_pushed_to_an_adapter_repository_keep_its_card(hub):
    liveedit = edited_model()
    liveedit.push_to_hub("me/adapter")
    card = (hub.folder("me/adapter") / "README.md").read_text()
    liveedit.add_edit(tiny_image(3), PROMPT, "Nice")
    liveedit.push_to_hub("me/adapter", experts_only=True)
    assert (hub.folder("me/adapter") / "README.md").read_text() == card
    assert len(load("me/adapter").edits) == 3


def test_an_adapter_in_a_subfolder_of_a_hub_repository(hub):
    liveedit = edited_model()
    liveedit.save_pretrained(hub.folder("me/many") / "adapters" / "llava")
    loaded = load("me/many", subfolder="adapters/llava", cache_dir="cache", local_files_only=True)
    download = hub.named("snapshot_download")[-1]
    assert all(p.startswith("adapters/llava/") for p in download["allow_patterns"])
    assert download["cache_dir"] == "cache" and download["local_files_only"] is True
    assert loaded.edits == liveedit.edits


# --- LiveEditTrainer ---------------------------------------------------------------------------


def training_args(tmp_path, **overrides) -> LiveEditTrainingArguments:
    """test_trainer's arguments, shortened to two steps with evaluation batches."""
    short = dict(per_device_eval_batch_size=4, max_steps=2, save_steps=2)
    return trainer_args(tmp_path, **{**short, **overrides})


def test_trainer_push_to_hub_keeps_the_liveedit_card(hub, tmp_path):
    liveedit = make_liveedit()
    liveedit.liveedit_config.base_model_name_or_path = HUB_BASE
    args = training_args(tmp_path, push_to_hub=True, hub_model_id="me/trained")
    trainer = LiveEditTrainer(liveedit, args=args, train_dataset=make_records())
    trainer.train()
    # the checkpoint push (hub_strategy every_save) already carries the adapter
    assert {"liveedit_config.json", "generator.safetensors"} <= hub.files("me/trained")
    trainer.push_to_hub(tags="flags")
    files = hub.files("me/trained")
    assert {"liveedit_config.json", "generator.safetensors", "README.md"} <= files
    assert "training_args.bin" in files and not any(f.startswith("checkpoint-") for f in files)
    card = (hub.folder("me/trained") / "README.md").read_text()
    assert "# LiveEdit adapter for" in card and '"me/trained"' in card
    assert card.count("## Training procedure") == 1 and "learning_rate: 0.003" in card
    data = metadata(hub.folder("me/trained") / "README.md")
    assert data.library_name == "hf-liveedit" and data.base_model == HUB_BASE
    assert {"flags", "generated_from_trainer", f"base_model:adapter:{HUB_BASE}"} <= set(data.tags)
    trainer.create_model_card()  # again: the section is replaced, not repeated
    card = (tmp_path / "run" / "README.md").read_text()
    assert card.count("## Training procedure") == 1
    pulled = load("me/trained")
    assert pulled.generator_sha256() == liveedit.generator_sha256()


def test_trainer_saves_training_args_and_loads_only_verified_generators(tmp_path):
    liveedit = make_liveedit()
    trainer = LiveEditTrainer(liveedit, args=training_args(tmp_path), train_dataset=make_records())
    trainer.train()
    trainer.save_model()
    for folder in (tmp_path / "run", tmp_path / "run" / "checkpoint-2"):
        saved = torch.load(folder / "training_args.bin", weights_only=False)
        assert isinstance(saved, LiveEditTrainingArguments) and saved.max_steps == 2
    assert not (tmp_path / "run" / "model.safetensors").exists()  # no copy of the VLLM
    weights = tmp_path / "run" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # still parses; only the recorded hash can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="hashes to .*generator_sha256"):
        trainer.load_generator(tmp_path / "run")


def test_trainer_refuses_to_train_a_generator_loaded_for_inference(tmp_path):
    make_liveedit().save_pretrained(tmp_path / "adapter")
    trainer = LiveEditTrainer(
        load(tmp_path / "adapter"), args=training_args(tmp_path), train_dataset=make_records()
    )
    with pytest.raises(ValueError, match="is_trainable=True"):
        trainer.train()


def test_eval_loss_is_the_same_for_the_same_model(tmp_path):
    trainer = LiveEditTrainer(
        make_liveedit(), args=training_args(tmp_path), eval_dataset=make_records(6)
    )
    state = torch.random.get_rng_state()
    first = trainer.evaluate()["eval_loss"]
    assert torch.equal(torch.random.get_rng_state(), state)  # training's stream untouched
    torch.rand(3)  # the global RNG moves on, as training would move it
    assert trainer.evaluate()["eval_loss"] == first
