"""Fill each record's ``pred`` with the default backbone's greedy answer.

MMEdit's ``pred`` is what the unedited model answers. Here it comes from the embedded default
backbone (``hf_liveedit.embedded.load_default_backbone``), asked the edit question about the
edit image through the processor's chat template, with the prompt of
:func:`hf_liveedit.data.prompts.format_prompt`.
"""

from __future__ import annotations

import json
from pathlib import Path

from hf_liveedit.data.benchmark.facts import normalize
from hf_liveedit.data.mmedit import open_image
from hf_liveedit.data.prompts import format_prompt


def load_backbone():
    """Load the default backbone, or return None when it is not available.

    Returns:
        ``(model, processor)`` or None (module missing or backbone not buildable).
    """
    try:
        from hf_liveedit.embedded import load_default_backbone
    except ImportError:
        return None
    return load_default_backbone()


def chat_prompt(processor, question: str, with_image: bool = True) -> str:
    """Wrap a record question in the backbone's chat template (the image first, then the text).

    Args:
        processor: The backbone's processor.
        question: The record's question (``src``, ``rephrase``, ``m_loc_q`` or ``loc``).
        with_image: Whether an image goes with the question.

    Returns:
        The prompt text, ending where the assistant's answer starts.
    """
    content = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": format_prompt(question)})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def clean_answer(text: str) -> str:
    """Keep the first line of a generated answer, without trailing punctuation.

    Args:
        text: Decoded generation.

    Returns:
        The short answer.
    """
    first = text.strip().split("\n", 1)[0].strip()
    return first.rstrip(".").strip()


def generate_answers(
    model,
    processor,
    items: list[tuple[str | None, str]],
    root: Path,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 12,
    progress: bool = True,
    desc: str = "pred",
) -> list[str]:
    """Greedy answers of the backbone to ``(image path or None, question)`` pairs.

    Args:
        model: A transformers vision-language model.
        processor: Its processor.
        items: ``(image path relative to root, question)`` pairs; all with an image or all
            without one (text-only questions).
        root: The image root.
        batch_size: Prompts per ``generate`` call.
        max_new_tokens: Generation length limit.
        progress: Show a progress bar.
        desc: Progress bar label.

    Returns:
        One cleaned answer per item.
    """
    import torch
    from tqdm.auto import tqdm

    processor.tokenizer.padding_side = "left"  # batched generation continues on the right
    answers = []
    bar = tqdm(total=len(items), desc=desc, disable=not progress)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        with_image = batch[0][0] is not None
        kwargs = {"images": [open_image(path, root) for path, _ in batch]} if with_image else {}
        inputs = processor(
            text=[chat_prompt(processor, question, with_image) for _, question in batch],
            return_tensors="pt",
            padding=True,
            **kwargs,
        )
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [
            clean_answer(t) for t in processor.batch_decode(new_tokens, skip_special_tokens=True)
        ]
        bar.update(len(batch))
    bar.close()
    return answers


def answer_matches(prediction: str, answer: str) -> tuple[bool, bool]:
    """Compare a generated answer with the true one.

    Args:
        prediction: The model's answer.
        answer: The true answer.

    Returns:
        ``(exact, contains)``: equal after :func:`normalize`, and the true answer found inside
        the prediction after :func:`normalize`.
    """
    pred, true = normalize(prediction), normalize(answer)
    return pred == true, bool(true) and true in pred


def _rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    matches = [answer_matches(p, a) for p, a in pairs]
    n = max(len(matches), 1)
    return {
        "n": len(matches),
        "exact": round(sum(e for e, _ in matches) / n, 4),
        "contains": round(sum(c for _, c in matches) / n, 4),
    }


def base_accuracy(
    model, processor, out: Path, *, batch_size: int = 16, progress: bool = True
) -> dict:
    """How often the unedited backbone knows the true facts and the locality answers (test split).

    Args:
        model: The backbone.
        processor: Its processor.
        out: The benchmark folder (``pred`` already filled).
        batch_size: Prompts per ``generate`` call.
        progress: Show progress bars.

    Returns:
        ``{"pred_vs_answer": {relation: rates, "all": rates}, "loc": rates, "m_loc": rates}``
        with ``rates = {"n", "exact", "contains"}``.
    """
    test = json.loads((out / "test.json").read_text(encoding="utf-8"))
    by_relation: dict[str, list[tuple[str, str]]] = {}
    for record in test:
        by_relation.setdefault(record["relation"], []).append((record["pred"], record["answer"]))
    facts = {rel: _rates(pairs) for rel, pairs in sorted(by_relation.items())}
    facts["all"] = _rates([pair for pairs in by_relation.values() for pair in pairs])
    loc = sorted({(r["loc"], r["loc_ans"]) for r in test})
    m_loc = sorted({(r["m_loc"], r["m_loc_q"], r["m_loc_a"]) for r in test})
    loc_answers = generate_answers(
        model,
        processor,
        [(None, q) for q, _ in loc],
        out,
        batch_size=batch_size,
        progress=progress,
        desc="loc",
    )
    m_loc_answers = generate_answers(
        model,
        processor,
        [(i, q) for i, q, _ in m_loc],
        out,
        batch_size=batch_size,
        progress=progress,
        desc="m_loc",
    )
    return {
        "pred_vs_answer": facts,
        "loc": _rates([(p, a) for p, (_, a) in zip(loc_answers, loc)]),
        "m_loc": _rates([(p, a) for p, (_, _, a) in zip(m_loc_answers, m_loc)]),
    }


def fill_predictions(
    out: Path, *, progress: bool = True, batch_size: int = 16, redo: bool = False
) -> bool:
    """Fill ``pred`` in ``train.json`` and ``test.json`` where it is empty, then score the backbone.

    The base accuracy (:func:`base_accuracy`) is written to ``base_accuracy.json``.

    Args:
        out: The benchmark folder.
        progress: Show a progress bar.
        batch_size: Prompts per ``generate`` call.
        redo: Answer every record again (after the backbone changed), not only empty ones.

    Returns:
        True if the backbone ran (or nothing was left to do), False if it is not available.
    """
    from hf_liveedit.data.benchmark.build import SPLITS

    files = {split: out / f"{split}.json" for split in SPLITS}
    records = {s: json.loads(p.read_text(encoding="utf-8")) for s, p in files.items()}
    todo = [r for rows in records.values() for r in rows if redo or not r["pred"]]
    if not todo and (out / "base_accuracy.json").is_file():
        return True
    backbone = load_backbone()
    if backbone is None:
        return False
    model, processor = backbone
    model.eval()
    answers = generate_answers(
        model,
        processor,
        [(r["image"], r["src"]) for r in todo],
        out,
        batch_size=batch_size,
        progress=progress,
    )
    for record, answer in zip(todo, answers):
        record["pred"] = answer
    for split, path in files.items():
        path.write_text(
            json.dumps(records[split], ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    scores = base_accuracy(model, processor, out, batch_size=batch_size, progress=progress)
    (out / "base_accuracy.json").write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    return True
