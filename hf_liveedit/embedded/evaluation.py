"""Held-out split and evaluation of the built backbone through its public generate path."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

import torch
from tqdm.auto import tqdm

from .projector import QUESTIONS, Example
from .sources import CaptionedImage


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, articles and extra spaces (SQuAD-style, for exact match)."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def entity_of(record: CaptionedImage) -> str:
    """The entity an image shows; images of one entity (e.g. "Letter C" drawn filled and
    outlined) always fall on the same side of the split."""
    return f"{record.source}:{normalize_answer(record.name or record.caption)}"


def split_rows(
    records: list[CaptionedImage], held_out_percent: int = 10
) -> tuple[list[int], list[int]]:
    """Deterministic entity-disjoint train/held-out split by a hash of the entity.

    Args:
        records: All records.
        held_out_percent: Share of entities held out.

    Returns:
        ``(train_rows, held_out_rows)``.
    """
    train, held_out = [], []
    for row, record in enumerate(records):
        digest = hashlib.sha1(entity_of(record).encode()).hexdigest()
        (held_out if int(digest, 16) % 100 < held_out_percent else train).append(row)
    return train, held_out


@torch.no_grad()
def generate_answers(
    model,
    processor,
    records: list[CaptionedImage],
    examples: list[Example],
    max_new_tokens: int = 16,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers through ``processor`` + ``model.generate``, exactly as a user would call.

    Args:
        model: The LLaVA.
        processor: Its ``LlavaProcessor``.
        records: All records.
        examples: Which image and question to ask.
        max_new_tokens: Generation budget.
        batch_size: Prompts per batch (left-padded).

    Returns:
        The decoded answers.
    """
    processor.tokenizer.padding_side = "left"
    answers = []
    for i in tqdm(range(0, len(examples), batch_size), desc="generate", leave=False):
        batch = examples[i : i + batch_size]
        prompts = [
            processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": QUESTIONS[ex.task]},
                        ],
                    }
                ],
                add_generation_prompt=True,
            )
            for ex in batch
        ]
        images = [records[ex.row].load() for ex in batch]
        inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt")
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        answers += [
            a.strip()
            for a in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ]
    return answers


def summarize(
    records: list[CaptionedImage], examples: list[Example], token_scores: list[tuple[int, int]]
) -> dict[str, dict[str, float]]:
    """Teacher-forced token accuracy per task and per source/task.

    Args:
        records: All records.
        examples: Scored examples.
        token_scores: ``(correct, total)`` per example, from ``token_accuracy``.

    Returns:
        ``{"all/caption": {"token_accuracy": ..., "n": ...}, "tuxpaint/name": ...}``.
    """
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ex, (hit, total) in zip(examples, token_scores):
        for group in (f"all/{ex.task}", f"{records[ex.row].source}/{ex.task}"):
            sums[group][0] += hit
            sums[group][1] += total
            sums[group][2] += 1
    return {
        g: {"token_accuracy": round(h / max(t, 1), 4), "n": n}
        for g, (h, t, n) in sorted(sums.items())
    }


def name_exact_match(
    records: list[CaptionedImage], examples: list[Example], answers: list[str]
) -> dict[str, dict[str, float]]:
    """Exact match (normalized) and containment of generated names, per source and overall.

    Args:
        records: All records.
        examples: Name examples that were generated.
        answers: Generated answers.

    Returns:
        ``{"all": {"exact_match": ..., "contains": ..., "n": ...}, "<source>": ...}``.
    """
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ex, answer in zip(examples, answers):
        got, want = normalize_answer(answer), normalize_answer(ex.answer)
        for group in ("all", records[ex.row].source):
            sums[group][0] += got == want
            sums[group][1] += want in got
            sums[group][2] += 1
    return {
        g: {"exact_match": round(e / n, 4), "contains": round(c / n, 4), "n": n}
        for g, (e, c, n) in sorted(sums.items())
    }
