"""Training the LLaVA multimodal projector on cached vision features (LM and vision frozen).

The objective is teacher-forced cross-entropy on the answer tokens of two chat turns per image:
"Describe the image." -> caption and "What is shown?" -> name. The projector trains on
standardized features (per-channel mean/std of the training tokens), folded into its first
layer afterwards, which makes the few hundred affordable Adam steps go further.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .language import IMAGE_TOKEN
from .sources import CaptionedImage

QUESTIONS = {"caption": "Describe the image.", "name": "What is shown?"}


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_autocast() -> torch.autocast:
    """bf16 autocast where the CPU has bf16 units (about 3x faster), float32 elsewhere.

    Without them (e.g. AVX2-only CPUs) bf16 is emulated and a training step is ~40x slower.
    """
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16_units())


@dataclass(frozen=True)
class Example:
    """One training/eval turn: the image's row in the feature cache, the task, the answer."""

    row: int
    task: str
    answer: str


def make_examples(records: list[CaptionedImage], rows: list[int]) -> list[Example]:
    """Both tasks for each record (the name task only where the record has a name).

    Args:
        records: All records (indexed by ``rows``).
        rows: Which records to use.

    Returns:
        The examples, caption first then name per record.
    """
    examples = []
    for row in rows:
        examples.append(Example(row, "caption", records[row].caption))
        if records[row].name:
            examples.append(Example(row, "name", records[row].name))
    return examples


class TurnEncoder:
    """Token ids of the chat prompt per task (image placeholder expanded) and of answers."""

    def __init__(self, processor, image_seq_length: int) -> None:
        self.tokenizer = processor.tokenizer
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.prompts = {}
        for task, question in QUESTIONS.items():
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
            ]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
            text = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * image_seq_length)
            self.prompts[task] = self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def answer_ids(self, answer: str) -> list[int]:
        """The answer followed by the end-of-turn token, which the model must also predict."""
        return self.tokenizer(answer + self.tokenizer.eos_token, add_special_tokens=False)[
            "input_ids"
        ]


def answer_logits(
    model, encoder: TurnEncoder, features: torch.Tensor, examples: list[Example]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the LLaVA language model on cached vision features; logits of the answer positions.

    Args:
        model: ``LlavaForConditionalGeneration``.
        encoder: Prompt/answer token ids.
        features: ``[N, tokens, vision_hidden]`` vision features of all records.
        examples: The batch.

    Returns:
        ``(logits [n_answer_tokens, vocab], targets [n_answer_tokens])`` over the whole batch.
    """
    seqs, spans = [], []
    for ex in examples:
        prompt, answer = encoder.prompts[ex.task], encoder.answer_ids(ex.answer)
        seqs.append(prompt + answer)
        spans.append((len(prompt), len(answer)))
    length = max(len(s) for s in seqs)
    pad = encoder.tokenizer.pad_token_id or 0
    ids = torch.tensor([s + [pad] * (length - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in seqs])

    embeds = model.get_input_embeddings()(ids)
    image_embeds = model.model.multi_modal_projector(features[[ex.row for ex in examples]])
    image_mask = (ids == encoder.image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    # position t predicts token t+1: the answer starting at `start` is read from start-1 on
    rows = torch.cat([torch.full((n,), i) for i, (_, n) in enumerate(spans)])
    cols = torch.cat([torch.arange(start - 1, start - 1 + n) for start, n in spans])
    logits = model.lm_head(hidden[rows, cols])
    return logits, ids[rows, cols + 1]


def train_projector(
    model,
    encoder: TurnEncoder,
    features: torch.Tensor,
    examples: list[Example],
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train only the projector with AdamW, warmup + cosine decay (:func:`cpu_autocast`).

    The projector is trained on standardized features; the standardization is folded into
    ``linear_1`` at the end, so the saved model takes raw vision features as usual.

    Args:
        model: ``LlavaForConditionalGeneration``; everything but the projector is frozen here.
        encoder: Prompt/answer token ids.
        features: Cached vision features.
        examples: Training examples (shuffled, cycled).
        steps: Optimizer steps.
        batch_size: Examples per step.
        lr: Peak learning rate.
        seed: Shuffling seed.

    Returns:
        The loss of each step.
    """
    projector = model.model.multi_modal_projector
    for p in model.parameters():
        p.requires_grad_(False)
    for p in projector.parameters():
        p.requires_grad_(True)
    rows = sorted({ex.row for ex in examples})
    mean = features[rows].mean(dim=(0, 1))
    std = features[rows].std(dim=(0, 1)).clamp_min(1e-3)
    features = (features - mean) / std
    optimizer = torch.optim.AdamW(projector.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    order, rng = [], random.Random(seed)
    losses = []
    model.eval()  # no dropout
    for _ in (bar := tqdm(range(steps), desc="train projector")):
        if len(order) < batch_size:
            order += rng.sample(examples, len(examples))
        batch, order = order[:batch_size], order[batch_size:]
        with cpu_autocast():
            logits, targets = answer_logits(model, encoder, features, batch)
        loss = F.cross_entropy(logits.float(), targets)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    projector.requires_grad_(False)
    with torch.no_grad():  # W((x - mean) / std) + b == (W / std) x + (b - W (mean / std))
        linear = projector.linear_1
        linear.bias -= linear.weight @ (mean / std)
        linear.weight /= std
    return losses


@torch.no_grad()
def token_accuracy(
    model,
    encoder: TurnEncoder,
    features: torch.Tensor,
    examples: list[Example],
    batch_size: int = 32,
) -> list[tuple[int, int]]:
    """Teacher-forced next-token accuracy of each example's answer (end-of-turn excluded).

    Args:
        model: ``LlavaForConditionalGeneration``.
        encoder: Prompt/answer token ids.
        features: Cached vision features.
        examples: Examples to score.
        batch_size: Examples per forward.

    Returns:
        ``(correct, total)`` answer tokens per example.
    """
    scores = []
    for i in tqdm(range(0, len(examples), batch_size), desc="token accuracy", leave=False):
        batch = examples[i : i + batch_size]
        with cpu_autocast():
            logits, targets = answer_logits(model, encoder, features, batch)
        hits = (logits.argmax(-1) == targets).tolist()
        for ex in batch:
            n = len(encoder.answer_ids(ex.answer))
            scores.append((sum(hits[: n - 1]), n - 1))
            hits = hits[n:]
    return scores
