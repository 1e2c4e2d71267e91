"""save_pretrained / from_pretrained / save_experts / load_experts / push_to_hub."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import PROMPT, TARGET, TINY_CONFIG, make_liveedit, rig_routing

from hf_liveedit import LiveEditConfig, LiveEditModel, get_liveedit_model
from hf_liveedit.testing.tiny_models import SUPPORTED_TINY_MODELS, tiny_image

SAVED_FILES = {
    "liveedit_config.json",
    "generator.safetensors",
    "experts.safetensors",
    "edits.json",
    "README.md",
}


def edited_model(family: str = "llava") -> LiveEditModel:
    liveedit = make_liveedit(family, expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."], [TARGET, "Paris"])
    return liveedit


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_save_and_load_give_identical_outputs(tmp_path, family):
    liveedit = edited_model(family)
    liveedit.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == SAVED_FILES
    base, processor = SUPPORTED_TINY_MODELS[family]()
    loaded = LiveEditModel.from_pretrained(base, tmp_path / "adapter", processor=processor)
    assert loaded.edits == liveedit.edits
    assert loaded.liveedit_config == liveedit.liveedit_config
    # Loaded for inference, as PEFT loads: frozen modules, eval mode.
    assert loaded.liveedit_config.inference_mode and not loaded.training
    assert loaded.get_nb_trainable_parameters()[0] == 0
    # Compared like with like: PyTorch may pick other kernels (1-ulp differences) for
    # parameters that do not require gradients.
    liveedit.liveedit_modules.requires_grad_(False)
    inputs = liveedit.build_inputs([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."])
    expected = logits(liveedit, inputs)
    assert torch.equal(logits(loaded, inputs), expected)
    with liveedit.disable_adapter():
        assert not torch.equal(logits(liveedit, inputs), expected)


def test_model_card_and_config_contents(tmp_path):
    from huggingface_hub import ModelCard

    import hf_liveedit

    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path, metrics={"Rel": 97.5})
    card = (tmp_path / "README.md").read_text()
    assert "2 edit(s) stored" in card and "Rel: 97.50" in card and PROMPT in card
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.library_name == "hf-liveedit" and data.license == "apache-2.0"
    assert data.pipeline_tag == "image-text-to-text"
    assert data.base_model is None  # the tiny model has no Hub id: the card asks for it
    assert "add `base_model: <its id>`" in card and "path/to/this/adapter" in card
    config = json.loads((tmp_path / "liveedit_config.json").read_text())
    assert "peft_type" not in config  # PEFT-aware tools must not take the folder for theirs
    assert config["hf_liveedit_version"] == hf_liveedit.__version__
    assert config["inference_mode"] is False
    assert config["base_model_fingerprint"]["architecture"] == "LlavaForConditionalGeneration"


def test_loading_onto_a_different_base_is_refused(tmp_path):
    edited_model("llava").save_pretrained(tmp_path)
    base, processor = SUPPORTED_TINY_MODELS["idefics3"]()
    with pytest.raises(ValueError, match="different base model.*architecture"):
        LiveEditModel.from_pretrained(base, tmp_path, processor=processor)
    other = make_liveedit("idefics3")
    with pytest.raises(ValueError, match="different base model"):
        other.load_experts(tmp_path)
    assert len(other.edits) == 0


def test_experts_are_shared_separately_from_the_generator(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path / "generator")
    liveedit.save_experts(tmp_path / "experts")
    assert {p.name for p in (tmp_path / "experts").iterdir()} == {
        "experts.safetensors",
        "edits.json",
    }
    base, processor = SUPPORTED_TINY_MODELS["llava"]()
    user = LiveEditModel.from_pretrained(
        base, tmp_path / "generator", processor=processor, load_experts=False
    )
    assert len(user.edits) == 0
    user.load_experts(tmp_path / "experts")
    assert user.edits == liveedit.edits
    torch.testing.assert_close(user.repository.up, liveedit.repository.up, rtol=0, atol=0)


def test_experts_from_another_generator_are_refused(tmp_path):
    edited_model().save_experts(tmp_path)
    fresh = make_liveedit("llava")
    with torch.no_grad():
        fresh.liveedit_modules.sentinel.add_(1.0)
    fresh.add_edit(tiny_image(3), PROMPT, "kept")
    with pytest.raises(ValueError, match="different generator"):
        fresh.load_experts(tmp_path)
    assert [record.target for record in fresh.edits] == ["kept"]
    fresh.load_experts(tmp_path, allow_generator_mismatch=True)
    assert len(fresh.edits) == 2


def test_interrupted_save_leaves_the_old_repository_intact(tmp_path, monkeypatch):
    liveedit = edited_model()
    target = tmp_path / "adapter"
    liveedit.save_pretrained(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    liveedit.add_edit(tiny_image(7), PROMPT, "Nice")

    import hf_liveedit.model as model_module

    real_save_file = model_module.save_file

    def crash_on_experts(tensors, filename, *args, **kwargs):
        if filename.endswith("experts.safetensors"):
            raise KeyboardInterrupt("simulated crash halfway through the save")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(model_module, "save_file", crash_on_experts)
    with pytest.raises(KeyboardInterrupt):
        liveedit.save_pretrained(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_save_keeps_other_files_in_the_folder(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text("{}")
    edited_model().save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").read_text() == "{}"


def test_push_to_hub_uploads_exactly_the_saved_folder(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def fake_upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
        calls["upload"] = {
            "repo_id": repo_id,
            "message": commit_message,
            "files": {p.name: p.read_bytes() for p in folder_path.iterdir()},
        }
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    liveedit = edited_model()
    assert liveedit.push_to_hub("me/llava-edits", private=True) == "commit-info"
    assert calls["create_repo"] == ("me/llava-edits", {"private": True, "exist_ok": True})
    uploaded = calls["upload"]["files"]
    assert set(uploaded) == SAVED_FILES and calls["upload"]["repo_id"] == "me/llava-edits"
    liveedit.save_pretrained(tmp_path)
    for name in SAVED_FILES - {"README.md"}:
        if name != "edits.json":
            assert uploaded[name] == (tmp_path / name).read_bytes(), name
    assert json.loads(uploaded["edits.json"]) == json.loads((tmp_path / "edits.json").read_text())
    assert b"me/llava-edits" in uploaded["README.md"]


def test_from_pretrained_without_network_names_the_repo():
    base, processor = SUPPORTED_TINY_MODELS["llava"]()
    with pytest.raises(OSError, match="me/not-downloadable"):
        LiveEditModel.from_pretrained(base, "me/not-downloadable", processor=processor)


def _other_weights(family: str = "llava"):
    """The same tiny architecture with one weight changed by one ulp-sized step."""
    base, processor = SUPPORTED_TINY_MODELS[family]()
    with torch.no_grad():
        weight = base.get_input_embeddings().weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(float("inf")))
    return base, processor


def test_base_model_hash_is_the_identity_of_the_weights():
    liveedit = make_liveedit("llava")
    same = make_liveedit("llava")
    other = LiveEditModel(_other_weights()[0], LiveEditConfig(**TINY_CONFIG))
    assert len(liveedit.base_model_sha256()) == 64
    assert liveedit.base_model_sha256() == same.base_model_sha256()
    assert liveedit.base_model_sha256() != other.base_model_sha256()
    # the generator's weights are not part of the backbone's identity
    with torch.no_grad():
        same.liveedit_modules.sentinel.add_(1.0)
    assert same.base_model_sha256() == liveedit.base_model_sha256()
    # dtype is part of it: the same checkpoint in bfloat16 is another model numerically
    half = SUPPORTED_TINY_MODELS["llava"]()[0].to(torch.bfloat16)
    assert LiveEditModel(half, LiveEditConfig(**TINY_CONFIG)).base_model_sha256() != (
        liveedit.base_model_sha256()
    )


def test_adapter_and_experts_record_the_base_model_hash(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path / "adapter")
    liveedit.save_experts(tmp_path / "experts")
    config = json.loads((tmp_path / "adapter" / "liveedit_config.json").read_text())
    edits = json.loads((tmp_path / "experts" / "edits.json").read_text())
    assert config["base_model_sha256"] == edits["base_model_sha256"]
    assert config["base_model_sha256"] == liveedit.base_model_sha256()
    assert liveedit.base_model_sha256() in (tmp_path / "adapter" / "README.md").read_text()


def test_an_adapter_on_other_weights_of_the_same_architecture_is_refused(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path)
    base, processor = _other_weights()
    reference = base.state_dict()["lm_head.weight"].clone()
    inputs = liveedit.build_inputs([tiny_image(0)], [PROMPT])
    before = logits(base, inputs)
    with pytest.raises(ValueError, match="hash to .*allow_base_model_mismatch=True"):
        LiveEditModel.from_pretrained(base, tmp_path, processor=processor)
    # the refusal leaves the model as it was: no hook attached, no weight touched
    assert torch.equal(logits(base, inputs), before)
    assert torch.equal(base.state_dict()["lm_head.weight"], reference)
    with pytest.warns(UserWarning, match="hash to"):
        loaded = LiveEditModel.from_pretrained(
            base, tmp_path, processor=processor, allow_base_model_mismatch=True
        )
    assert loaded.edits == liveedit.edits


def test_experts_on_other_weights_are_refused_and_the_repository_kept(tmp_path):
    edited_model().save_experts(tmp_path)
    base, processor = _other_weights()
    torch.manual_seed(0)
    other = get_liveedit_model(base, LiveEditConfig(**TINY_CONFIG), processor=processor)
    rig_routing(other, keep=True)
    other.add_edit(tiny_image(3), PROMPT, "kept")
    with pytest.raises(ValueError, match="hash to"):
        other.load_experts(tmp_path, allow_generator_mismatch=True)
    assert [record.target for record in other.edits] == ["kept"]
    with pytest.warns(UserWarning, match="hash to"):
        other.load_experts(tmp_path, allow_generator_mismatch=True, allow_base_model_mismatch=True)
    assert len(other.edits) == 2


def test_adapters_saved_before_the_hash_was_recorded_still_load(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path)
    for name in ("liveedit_config.json", "edits.json"):
        payload = json.loads((tmp_path / name).read_text())
        del payload["base_model_sha256"]
        (tmp_path / name).write_text(json.dumps(payload))
    base, processor = _other_weights()  # unknowable without a hash: only the fingerprint counts
    loaded = LiveEditModel.from_pretrained(base, tmp_path, processor=processor)
    assert loaded.edits == liveedit.edits
