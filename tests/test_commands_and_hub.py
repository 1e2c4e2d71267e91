"""The tiny demo, loading an adapter from the Hub, and the benchmark's ``pred`` filling.

Expected answers are computed by a second route: prompts written out literally in the tiny
LLaVA's chat format (``USER: <image>\\n{text} ASSISTANT:``) and greedy decoding by hand (one full
forward per token, argmax, stop at end-of-sequence) on a freshly built base model, never through
``generate`` or the code under test.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit import LiveEditModel, cli
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

pytestmark = pytest.mark.usefixtures("one_thread")


def llava_prompt(text: str, with_image: bool = True) -> str:
    """The tiny LLaVA's chat format, written out (see ``_LLAVA_CHAT`` in the tiny models)."""
    return "USER: " + ("<image>\n" if with_image else "") + text + " ASSISTANT:"


def greedy_by_hand(model, processor, image, text: str, max_new_tokens: int) -> str:
    """Greedy answer decoded token by token with full forwards (no cache, no ``generate``)."""
    if image is None:
        inputs = processor.tokenizer([text], return_tensors="pt")
    else:
        inputs = processor(images=[image], text=[text], return_tensors="pt")
    ids, extra = inputs["input_ids"], {}
    if image is not None:
        extra["pixel_values"] = inputs["pixel_values"]
    prompt_length = ids.shape[1]
    eos = model.generation_config.eos_token_id
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits
        token = int(logits[0, -1].argmax())
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if token == eos:
            break
    return processor.tokenizer.decode(ids[0, prompt_length:], skip_special_tokens=True)


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


# --- hf-liveedit demo --backbone tiny ----------------------------------------------------------


def test_demo_on_the_tiny_backbone_edits_and_leaves_text_only_inputs(capsys):
    assert cli.main(["demo", "--backbone", "tiny"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("edit ")]
    assert len(lines) == 2, out
    # Before the first edit the model is the base model: its answer, decoded by hand.
    model, processor = tiny_llava()
    expected = first_line(
        greedy_by_hand(model, processor, tiny_image(0), llava_prompt("What is the capital?"), 8)
    )
    assert lines[0].startswith(
        f"edit 'What is the capital?' -> 'Lyon': before {expected!r}, after "
    ), lines[0]
    assert lines[1].startswith("edit 'Name it.' -> 'Paris': before ")
    for line in lines:  # each edit changes the answer to its own prompt
        before, after = re.fullmatch(r".*: before (.*), after (.*)", line).groups()
        assert before != after, line
    assert "2 edits stored; text-only input unchanged: True" in out


# --- LiveEditModel.from_pretrained from a Hub repo id ----------------------------------------


def test_from_pretrained_downloads_a_hub_repo_with_revision_and_token(tmp_path, monkeypatch):
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."], [TARGET, "Paris"])
    snapshot = tmp_path / "hub-cache" / "snapshot"
    liveedit.save_pretrained(snapshot)

    calls = []
    signature = inspect.signature(huggingface_hub.snapshot_download)

    def fake_snapshot_download(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.chdir(tmp_path)  # "me/llava-edits" must not name a local folder
    base, processor = tiny_llava()
    loaded = LiveEditModel.from_pretrained(
        base, "me/llava-edits", processor=processor, revision="v1.0", token="hf_secret"
    )
    assert len(calls) == 1
    assert calls[0]["repo_id"] == "me/llava-edits"
    assert calls[0]["revision"] == "v1.0" and calls[0]["token"] == "hf_secret"
    assert loaded.edits == liveedit.edits
    inputs = liveedit.build_inputs([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."])
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, liveedit(**inputs).logits)


def test_from_pretrained_of_an_unreachable_repo_is_an_os_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base, processor = tiny_llava()
    with pytest.raises(OSError, match="me/not-downloadable"):  # offline: HF_HUB_OFFLINE=1
        LiveEditModel.from_pretrained(base, "me/not-downloadable", processor=processor)


# --- fill_predictions with the real tiny LLaVA -------------------------------------------------


def test_fill_predictions_records_the_backbones_greedy_answers(tmp_path, monkeypatch):
    from hf_liveedit.data.benchmark import preds
    from hf_liveedit.data.benchmark.facts import normalize

    (tmp_path / "images").mkdir()
    for seed in range(6):
        tiny_image(seed).save(tmp_path / "images" / f"{seed}.png")  # PNG: lossless

    def record(image: int, src: str, relation: str, m_loc: int, m_loc_q: str) -> dict:
        return {
            "src": src, "rephrase": "", "pred": "", "alt": "Lima",
            "image": f"images/{image}.png", "image_rephrase": f"images/{image}.png",
            "loc": "nq question: who wrote hamlet", "loc_ans": "",
            "m_loc": f"images/{m_loc}.png", "m_loc_q": m_loc_q, "m_loc_a": "",
            "task": "vqa", "source": "test", "split": "test", "entity": "X",
            "relation": relation, "answer": "", "entity_key": "x", "image_source": "s",
            "image_rephrase_source": "s",
        }  # fmt: skip

    train = [record(0, "Which city is this?", "country/capital", 3, "What is it?")]
    test = [
        record(1, "What is the capital of the country whose flag is shown?", "country/capital",
               4, "What animal is this?"),
        record(2, "Name the country.", "region/country", 5, "What colour is it?"),
    ]  # fmt: skip

    # The expected answers, by hand: literal prompts, greedy decoding without generate.
    model, processor = tiny_llava()
    root = tmp_path

    def answer(image: str | None, question: str) -> str:
        from PIL import Image

        text = llava_prompt(f"{question} The answer is:", with_image=image is not None)
        picture = None if image is None else Image.open(root / image).convert("RGB")
        return first_line(greedy_by_hand(model, processor, picture, text, 12)).rstrip(".").strip()

    expected_preds = [answer(r["image"], r["src"]) for r in train + test]
    loc_answer = answer(None, test[0]["loc"])
    m_loc_answers = [answer(r["m_loc"], r["m_loc_q"]) for r in test]
    # Make the backbone right exactly where we choose: the first test record's fact, the
    # text-locality question and the first image-locality question.
    assert normalize(expected_preds[1]) and normalize(loc_answer) and normalize(m_loc_answers[0])
    test[0]["answer"], test[1]["answer"] = expected_preds[1], "zz-never-said"
    for r in test:
        r["loc_ans"] = loc_answer
    test[0]["m_loc_a"], test[1]["m_loc_a"] = m_loc_answers[0], "zz-never-said"
    (tmp_path / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (tmp_path / "test.json").write_text(json.dumps(test), encoding="utf-8")

    backbone, backbone_processor = tiny_llava()
    monkeypatch.setattr(preds, "load_backbone", lambda: (backbone, backbone_processor))
    assert preds.fill_predictions(tmp_path, progress=False, batch_size=2)

    filled = [
        r["pred"]
        for split in ("train", "test")
        for r in json.loads((tmp_path / f"{split}.json").read_text(encoding="utf-8"))
    ]
    assert filled == expected_preds
    scores = json.loads((tmp_path / "base_accuracy.json").read_text(encoding="utf-8"))
    assert scores["pred_vs_answer"] == {
        "all": {"n": 2, "exact": 0.5, "contains": 0.5},
        "country/capital": {"n": 1, "exact": 1.0, "contains": 1.0},
        "region/country": {"n": 1, "exact": 0.0, "contains": 0.0},
    }
    assert scores["loc"] == {"n": 1, "exact": 1.0, "contains": 1.0}
    assert scores["m_loc"] == {"n": 2, "exact": 0.5, "contains": 0.5}

    # A second call has nothing left to do and changes nothing.
    before = {p.name: p.read_bytes() for p in Path(tmp_path).glob("*.json")}
    monkeypatch.setattr(preds, "load_backbone", lambda: pytest.fail("backbone loaded again"))
    assert preds.fill_predictions(tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in Path(tmp_path).glob("*.json")} == before
