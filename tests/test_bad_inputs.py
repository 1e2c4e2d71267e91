"""Bad input to the adapter: a clear error naming the problem, and nothing changed."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPT, TARGET, TINY_CONFIG, make_liveedit
from PIL import Image

from hf_liveedit import LiveEditConfig, LiveEditModel, get_liveedit_model
from hf_liveedit import model as model_module
from hf_liveedit.testing.tiny_models import SUPPORTED_TINY_MODELS, tiny_image


@pytest.fixture
def liveedit() -> LiveEditModel:
    """A tiny LLaVA adapter holding one edit."""
    liveedit = make_liveedit("llava")
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    return liveedit


def assert_unchanged(liveedit: LiveEditModel, before: torch.Tensor) -> None:
    assert len(liveedit.edits) == 1 and torch.equal(liveedit.repository.up, before)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda m: m.add_edits([tiny_image(1)], [PROMPT], ["x"], batch_size=-1),
            ValueError,
            "batch_size",
        ),
        (
            lambda m: m.add_edits([tiny_image(1)], [PROMPT], ["x"], batch_size=0),
            ValueError,
            "batch_size",
        ),
        (
            lambda m: m.add_edits([tiny_image(1)], [PROMPT], ["x"], batch_size=2.0),
            ValueError,
            "batch_size",
        ),
        (
            lambda m: m.add_edits([tiny_image(1)] * 2, "ab", ["x", "y"]),
            TypeError,
            "prompts must be a sequence",
        ),
        (
            lambda m: m.add_edits(tiny_image(1), [PROMPT], ["x"]),
            TypeError,
            "images must be a sequence",
        ),
        (lambda m: m.add_edit(Image.new("RGB", (0, 0)), PROMPT, "x"), ValueError, "no pixels"),
        (lambda m: m.add_edit(tiny_image(1), PROMPT, "\u200b"), ValueError, "Blank target"),
        (lambda m: m.add_edit(tiny_image(1), " \t\u200b\n", "x"), ValueError, "Blank prompt"),
        (lambda m: m.add_edit(tiny_image(1), "word " * 5000, "x"), ValueError, "context"),
        (lambda m: m.add_edit(tiny_image(1), "<image> " + PROMPT, "x"), ValueError, "placeholder"),
        (
            lambda m: m.add_edit("https://example.org/flag.png", PROMPT, "x"),
            ValueError,
            "https://example.org/flag.png",
        ),
        (
            lambda m: m.add_edit("no/such/flag.png", PROMPT, "x"),
            FileNotFoundError,
            "no/such/flag.png",
        ),
        (lambda m: m.add_edit(b"png bytes", PROMPT, "x"), TypeError, "bytes"),
    ],
    ids=[
        "batch-size-negative",
        "batch-size-zero",
        "batch-size-float",
        "prompts-as-one-string",
        "images-as-one-image",
        "zero-size-image",
        "invisible-target",
        "invisible-prompt",
        "longer-than-context",
        "image-token-in-prompt",
        "url",
        "missing-path",
        "bytes",
    ],
)
def test_bad_edit_input_is_refused_before_anything_changes(liveedit, call, error, match):
    before = liveedit.repository.up.clone()
    with pytest.raises(error, match=match):
        call(liveedit)
    assert_unchanged(liveedit, before)


def test_a_bad_image_late_in_a_batch_stores_nothing(liveedit, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    before = liveedit.repository.up.clone()
    with pytest.raises(ValueError, match="broken.png"):
        liveedit.add_edits(
            [tiny_image(1), tiny_image(2), broken], [PROMPT] * 3, ["a", "b", "c"], batch_size=1
        )
    assert_unchanged(liveedit, before)


def test_add_edits_decodes_images_one_batch_at_a_time(liveedit, tmp_path, monkeypatch):
    paths = []
    for seed in range(6):
        path = tmp_path / f"{seed}.png"
        tiny_image(seed + 1).save(path)
        paths.append(path)
    events: list[str] = []
    load, make = model_module.load_image, LiveEditModel._make_experts

    def recording_load(image):
        if not isinstance(image, Image.Image):  # a file decoded (not an already decoded image)
            events.append("load")
        return load(image)

    def recording_make(self, inputs):
        events.append(f"make {inputs['input_ids'].shape[0]}")
        return make(self, inputs)

    monkeypatch.setattr(model_module, "load_image", recording_load)
    monkeypatch.setattr(LiveEditModel, "_make_experts", recording_make)
    ids = liveedit.add_edits(paths, [PROMPT] * 6, list("abcdef"), batch_size=2)
    assert events == ["load", "load", "make 2"] * 3
    assert [edit.id for edit in liveedit.edits[1:]] == ids


def test_a_dict_config_is_refused_with_a_hint():
    model, processor = SUPPORTED_TINY_MODELS["llava"]()
    with pytest.raises(TypeError, match=r"LiveEditConfig\(\*\*settings\)"):
        get_liveedit_model(model, dict(TINY_CONFIG), processor)


def test_wrapping_twice_is_refused_and_disable_adapter_stays_the_base_model(liveedit):
    inputs = liveedit.build_inputs(tiny_image(0), PROMPT)
    with torch.no_grad(), liveedit.disable_adapter():
        base = liveedit(**inputs).logits
    for model in (liveedit, liveedit.base_model):
        with pytest.raises(ValueError, match="already"):
            get_liveedit_model(model, LiveEditConfig(**TINY_CONFIG), liveedit.processor)
    with torch.no_grad(), liveedit.disable_adapter():
        assert torch.equal(liveedit(**inputs).logits, base)
    plain = liveedit.unload()  # after unload the model can be wrapped afresh
    assert isinstance(
        get_liveedit_model(plain, LiveEditConfig(**TINY_CONFIG), liveedit.processor), LiveEditModel
    )


def test_a_processor_of_another_family_is_refused():
    model, _ = SUPPORTED_TINY_MODELS["llava"]()
    _, qwen_processor = SUPPORTED_TINY_MODELS["qwen2_vl"]()
    with pytest.raises(ValueError, match="processor that belongs to this model"):
        get_liveedit_model(model, LiveEditConfig(**TINY_CONFIG), qwen_processor)


def test_fuzzed_edit_inputs_either_store_one_edit_or_raise_a_clear_error_and_change_nothing(
    liveedit, tmp_path
):
    """Seeded random mixes of good and bad images, prompts and targets (a fast fuzz)."""
    import random

    (tmp_path / "garbage.png").write_bytes(bytes(range(256)))
    tiny_image(3).save(tmp_path / "good.png")
    images = {
        "ok": [tiny_image(1), tmp_path / "good.png", str(tmp_path / "good.png")],
        "bad": [
            None,
            3,
            b"png",
            Image.new("RGB", (0, 5)),
            tmp_path / "garbage.png",
            tmp_path / "missing.png",
            "http://example.org/x.png",
            torch.zeros(3, 8, 8),
        ],
    }
    texts = {
        "ok": ["Name it.", "Où est-ce ?", "Lyon", "7", "🇫🇷 flag"],
        "bad": ["", "   ", "\u200b\u200b", None, 12, ["Lyon"], "<image>", "x " * 4000],
    }
    rng = random.Random(0)
    stored = 1
    for _ in range(60):
        parts = [rng.choice(["ok", "ok", "bad"]) for _ in range(3)]
        image = rng.choice(images[parts[0]])
        prompt, target = (rng.choice(texts[kind]) for kind in parts[1:])
        before = liveedit.repository.up.clone()
        if parts == ["ok", "ok", "ok"]:
            liveedit.add_edit(image, prompt, target)
            stored += 1
        else:
            with pytest.raises((TypeError, ValueError, FileNotFoundError)) as caught:
                liveedit.add_edit(image, prompt, target)
            assert str(caught.value) and "Traceback" not in str(caught.value)
            assert torch.equal(liveedit.repository.up, before)
        assert len(liveedit.edits) == stored
