"""Fill each record's ``pred`` with the default backbone's greedy answer.

MMEdit's ``pred`` is what the unedited model answers. Here it comes from the embedded default
backbone (``hf_liveedit.embedded.load_default_backbone``), asked the edit question about the
edit image through the processor's chat template, with the prompt of
:func:`hf_liveedit.data.prompts.format_prompt`.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def chat_prompt(processor, question: str) -> str:
    """Wrap a record question in the backbone's chat template (one image, then the text).

    Args:
        processor: The backbone's processor.
        question: The record's question (``src``, ``rephrase`` or ``m_loc_q``).

    Returns:
        The prompt text, ending where the assistant's answer starts.
    """
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": format_prompt(question)}]}]
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


def generate_answers(model, processor, items: list[tuple[str, str]], root: Path, *,
                     batch_size: int = 16, max_new_tokens: int = 12,
                     progress: bool = True) -> list[str]:
    """Greedy answers of the backbone to ``(image path, question)`` pairs.

    Args:
        model: A transformers vision-language model.
        processor: Its processor.
        items: ``(image path relative to root, question)`` pairs.
        root: The image root.
        batch_size: Prompts per ``generate`` call.
        max_new_tokens: Generation length limit.
        progress: Show a progress bar.

    Returns:
        One cleaned answer per item.
    """
    import torch
    from tqdm.auto import tqdm

    processor.tokenizer.padding_side = "left"  # batched generation continues on the right
    answers = []
    bar = tqdm(total=len(items), desc="pred", disable=not progress)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        inputs = processor(
            images=[open_image(path, root) for path, _ in batch],
            text=[chat_prompt(processor, question) for _, question in batch],
            return_tensors="pt", padding=True,
        )
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [clean_answer(t) for t in
                    processor.batch_decode(new_tokens, skip_special_tokens=True)]
        bar.update(len(batch))
    bar.close()
    return answers


def fill_predictions(out: Path, *, progress: bool = True, batch_size: int = 16) -> bool:
    """Fill ``pred`` in ``train.json`` and ``test.json`` where it is empty.

    Args:
        out: The benchmark folder.
        progress: Show a progress bar.
        batch_size: Prompts per ``generate`` call.

    Returns:
        True if the backbone ran, False if it is not available (preds stay empty).
    """
    from hf_liveedit.data.benchmark.build import SPLITS

    files = {split: out / f"{split}.json" for split in SPLITS}
    records = {s: json.loads(p.read_text(encoding="utf-8")) for s, p in files.items()}
    todo = [r for rows in records.values() for r in rows if not r["pred"]]
    if not todo:
        return True
    backbone = load_backbone()
    if backbone is None:
        return False
    model, processor = backbone
    model.eval()
    answers = generate_answers(model, processor, [(r["image"], r["src"]) for r in todo], out,
                               batch_size=batch_size, progress=progress)
    for record, answer in zip(todo, answers):
        record["pred"] = answer
    for split, path in files.items():
        path.write_text(json.dumps(records[split], ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
    return True
