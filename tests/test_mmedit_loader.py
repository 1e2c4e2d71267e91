"""The MMEdit-format loader on the real E-VQA / E-IC / VLKEB annotation files and a tiny benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hf_liveedit.data import COLUMNS, MMEDIT_FIELDS, format_prompt, load_benchmark, load_mmedit
from hf_liveedit.data.prompts import LOC_PREFIX

# CI clones the repository next to a copy of shared/, as on the development machines.
REAL_ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared/data/real-annotations"


@pytest.mark.parametrize(
    ("name", "count", "task"),
    [
        ("evqa_eval.json", 2093, "vqa"),
        ("eic_eval.json", 1000, "caption"),
        ("vlkeb_eval.json", 3174, "vqa"),
    ],
)
def test_real_annotation_files_load_with_uniform_schema(name, count, task):
    path = REAL_ANNOTATIONS / name
    raw = json.loads(path.read_text(encoding="utf-8"))
    dataset = load_mmedit(path)
    assert len(dataset) == count
    assert tuple(dataset.column_names) == COLUMNS
    first = dataset[0]
    for key in MMEDIT_FIELDS:
        expected = raw[0][key]
        if key == "loc":  # VLKEB omits MMEdit's prefix; the loader adds it once
            expected = expected if expected.startswith(LOC_PREFIX) else LOC_PREFIX + expected
        assert first[key] == expected
    assert first["task"] == task and first["source"] == path.stem
    assert all(
        q.startswith(LOC_PREFIX) and not q.startswith(LOC_PREFIX * 2) for q in dataset["loc"]
    )
    assert all(dataset["image"]) and all(dataset["alt"])


def test_missing_image_error_names_file_and_root(tmp_path):
    path = REAL_ANNOTATIONS / "evqa_eval.json"
    dataset = load_mmedit(path, image_root=tmp_path)  # building does not open images
    expected = json.loads(path.read_text(encoding="utf-8"))[0]["image"]
    with pytest.raises(FileNotFoundError) as error:
        dataset[0]
    assert expected in str(error.value) and str(tmp_path) in str(error.value)


def test_prompt_formatting():
    assert format_prompt("How many balls?") == "How many balls? The answer is:"
    assert format_prompt("a photo of", task="caption") == "a photo of"
    with pytest.raises(ValueError, match="unknown task"):
        format_prompt("x", task="nope")


def _fake_benchmark(root: Path) -> list[dict]:
    colours = {"flag": "red", "flag2": "blue", "loc": "green"}
    for name, colour in colours.items():
        (root / "images").mkdir(exist_ok=True)
        Image.new("RGB", (8, 6), colour).save(root / "images" / f"{name}.png")
    records = [
        {
            "src": "What is the capital of the country whose flag is shown?",
            "rephrase": "Which city is the capital of the nation with this flag?",
            "pred": "",
            "alt": "Lima",
            "image": "images/flag.png",
            "image_rephrase": "images/flag2.png",
            "loc": "nq question: what is the atomic number of neon",
            "loc_ans": "10",
            "m_loc": "images/loc.png",
            "m_loc_q": "What animal is this?",
            "m_loc_a": "cat",
            "task": "vqa",
            "source": "hf-liveedit-benchmark",
            "split": "test",
            "entity": "France",
            "relation": "country/capital",
            "answer": "Paris",
            "entity_key": "country:FR",
            "image_source": "kgeography-flags",
            "image_rephrase_source": "noto-emoji",
        },
    ]
    (root / "test.json").write_text(json.dumps(records), encoding="utf-8")
    return records


def test_tiny_benchmark_loads_with_lazy_images(tmp_path):
    records = _fake_benchmark(tmp_path)
    dataset = load_benchmark(tmp_path, "test")
    row = dataset[0]
    assert isinstance(row["image"], Image.Image) and row["image"].getpixel((0, 0)) == (255, 0, 0)
    assert row["image_rephrase"].getpixel((0, 0)) == (0, 0, 255)
    assert row["m_loc"].size == (8, 6)
    assert row["image_path"] == records[0]["image"]
    assert (row["relation"], row["answer"], row["split"]) == ("country/capital", "Paris", "test")
    assert load_benchmark(tmp_path, "test", images=False)[0]["image"] == "images/flag.png"
    (tmp_path / "images/loc.png").unlink()
    with pytest.raises(FileNotFoundError, match="images/loc.png"):
        dataset[0]
    with pytest.raises(FileNotFoundError, match="build-benchmark"):
        load_benchmark(tmp_path, "train")


class _FakeProcessor:
    """Duck-typed processor: records prompts, 'decodes' every generation as "Paris."."""

    def __init__(self):
        self.tokenizer = type("Tok", (), {"padding_side": "right"})()
        self.prompts: list[str] = []

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        content = messages[0]["content"]
        return "<image>" * (content[0]["type"] == "image") + content[-1]["text"]

    def __call__(self, text, return_tensors, padding, images=None):
        import torch

        self.prompts += text
        assert images is None or len(images) == len(text)
        return {"input_ids": torch.zeros(len(text), 3, dtype=torch.long)}

    def batch_decode(self, tokens, skip_special_tokens):
        return ["Paris.\nmore"] * len(tokens)


class _FakeModel:
    def eval(self):
        return self

    def generate(self, input_ids, do_sample, max_new_tokens):
        import torch

        assert do_sample is False
        return torch.cat([input_ids, torch.ones(input_ids.shape[0], 2, dtype=torch.long)], 1)


def test_fill_predictions_with_a_backbone(tmp_path, monkeypatch):
    from hf_liveedit.data.benchmark import preds

    records = _fake_benchmark(tmp_path)
    (tmp_path / "train.json").write_text("[]", encoding="utf-8")
    processor = _FakeProcessor()
    monkeypatch.setattr(preds, "load_backbone", lambda: (_FakeModel(), processor))
    assert preds.fill_predictions(tmp_path, progress=False)
    filled = json.loads((tmp_path / "test.json").read_text(encoding="utf-8"))
    assert filled[0]["pred"] == "Paris"
    assert processor.prompts[0] == "<image>" + format_prompt(records[0]["src"])
    assert processor.tokenizer.padding_side == "left"
    scores = json.loads((tmp_path / "base_accuracy.json").read_text(encoding="utf-8"))
    assert scores["pred_vs_answer"]["all"] == {"n": 1, "exact": 1.0, "contains": 1.0}
    assert scores["loc"]["exact"] == 0.0 and scores["m_loc"]["n"] == 1
    assert "nq question: what is the atomic number of neon" in "".join(processor.prompts)


def test_fill_predictions_without_backbone(tmp_path, monkeypatch):
    from hf_liveedit.data.benchmark import preds

    _fake_benchmark(tmp_path)
    (tmp_path / "train.json").write_text("[]", encoding="utf-8")
    monkeypatch.setattr(preds, "load_backbone", lambda: None)
    assert not preds.fill_predictions(tmp_path, progress=False)


def test_data_card_and_picture_sheet(tmp_path):
    from hf_liveedit.data.benchmark.build import count_records, read_split_files
    from hf_liveedit.data.benchmark.card import write_card

    _fake_benchmark(tmp_path)
    (tmp_path / "train.json").write_text("[]", encoding="utf-8")
    records = read_split_files(tmp_path)
    info = {
        "seed": 0,
        "test_fraction": 0.5,
        "seconds": 1.0,
        "n_images": 3,
        "preds_missing": 1,
        "counts": count_records(records),
        "packages": {"kgeography-data": "1"},
    }
    card = write_card(tmp_path, info, {}).read_text(encoding="utf-8")
    assert "| country/capital | 0 | 1 |" in card and "kgeography-data | 1 |" in card
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 600 and sheet.height > 200


def test_fill_predictions_with_a_real_tiny_llava(tmp_path, monkeypatch):
    from hf_liveedit.data.benchmark import preds
    from hf_liveedit.testing.tiny_models import tiny_llava

    _fake_benchmark(tmp_path)
    (tmp_path / "train.json").write_text("[]", encoding="utf-8")
    model, processor = tiny_llava()
    monkeypatch.setattr(preds, "load_backbone", lambda: (model, processor))
    assert preds.fill_predictions(tmp_path, progress=False, batch_size=2)
    filled = json.loads((tmp_path / "test.json").read_text(encoding="utf-8"))
    assert isinstance(filled[0]["pred"], str)
    scores = json.loads((tmp_path / "base_accuracy.json").read_text(encoding="utf-8"))
    assert scores["loc"]["n"] == 1 and scores["m_loc"]["n"] == 1
