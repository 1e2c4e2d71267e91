"""The interface between LiveEdit and one family of Hugging Face VLLMs.

Everything family-specific lives behind :class:`BackboneAdapter`: where decoder layer ``l_e``
is, which token ids form the image block, how the processor is called and how prompts are
formatted. Supporting a new family means one new file with one subclass, registered in
``hf_liveedit/backbones/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature

from ..modules import Spans

IGNORE_INDEX = -100


class BackboneAdapter(ABC):
    """Family-specific knowledge LiveEdit needs about a VLLM.

    Args:
        model: the VLLM (an instance of one of :attr:`model_class_names`).
        processor: its processor; needed to build edit inputs, optional otherwise.
    """

    #: transformers class names this adapter supports.
    model_class_names: ClassVar[tuple[str, ...]] = ()
    #: sentinel size used when the family has no fixed image token count.
    default_image_tokens: ClassVar[int] = 64

    def __init__(self, model: nn.Module, processor: Any | None = None):
        self.model = model
        self.processor = processor

    # --- where things are -------------------------------------------------------------------
    @abstractmethod
    def decoder_layers(self) -> nn.ModuleList:
        """The language model's decoder layers."""

    def step_module(self) -> nn.Module:
        """The module called once per prefill / decoding step (its kwargs carry the KV cache)."""
        return self.model

    @property
    def text_config(self) -> Any:
        """The language model's config."""
        return self.model.config.get_text_config()

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers())

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def image_token_id(self) -> int:
        """Id of the placeholder token that the model replaces with visual features."""
        return self.model.config.image_token_id

    def image_block_token_ids(self) -> list[int]:
        """Ids that make up the image block (the image tokens and any wrapper tokens)."""
        return [self.image_token_id]

    @property
    def num_image_tokens(self) -> int:
        """Image tokens per image; the default size of the vision sentinel."""
        return self.default_image_tokens

    # --- positions ----------------------------------------------------------------------------
    def spans(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Spans:
        """Image, prompt and answer positions of a batch.

        The prompt is every attended, non-answer token after the last image-block token (for
        text-only sequences: every attended, non-answer token). Answer tokens are the positions
        with ``labels != -100``.
        """
        image = input_ids == self.image_token_id
        block = torch.isin(
            input_ids, torch.tensor(self.image_block_token_ids(), device=input_ids.device)
        )
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        last_block = torch.where(block, positions, -1).amax(dim=1, keepdim=True)
        valid = attention_mask.bool() if attention_mask is not None else torch.ones_like(image)
        answer = (labels != IGNORE_INDEX) & valid if labels is not None else torch.zeros_like(image)
        prompt = (positions > last_block) & valid & ~answer
        return Spans(image=image, prompt=prompt, answer=answer)

    # --- inputs -------------------------------------------------------------------------------
    def require_processor(self) -> Any:
        if self.processor is None:
            raise ValueError(
                f"{type(self.model).__name__} needs its processor to build edit inputs: pass "
                "`processor=` to get_liveedit_model / LiveEditModel.from_pretrained"
            )
        return self.processor

    def format_prompt(self, prompt: str, with_image: bool = True) -> str:
        """The text given to the processor for one user turn, ending where the answer starts."""
        processor = self.require_processor()
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def process(self, images: Sequence[Image.Image] | None, texts: Sequence[str]) -> BatchFeature:
        """Call the processor on formatted texts (and their images)."""
        processor = self.require_processor()
        if images is None:
            return processor.tokenizer(list(texts), return_tensors="pt", padding=True)
        return processor(images=list(images), text=list(texts), return_tensors="pt", padding=True)

    def build_inputs(
        self,
        images: Sequence[Image.Image] | None,
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
    ) -> BatchFeature:
        """Model inputs for ``(image, prompt[, target])`` triples, formatted as at inference.

        With targets, the target tokens are appended to each formatted prompt and marked in
        ``labels`` (everything else is -100), exactly as teacher-forced scoring sees them.
        Sequences are left-padded.

        Args:
            images: one image per prompt, or None for text-only inputs.
            prompts: user prompts (unformatted).
            targets: answers to append, or None.
        """
        texts = [self.format_prompt(prompt, with_image=images is not None) for prompt in prompts]
        inputs = self.process(images, texts)
        if targets is None:
            return inputs
        tokenizer = self.require_processor().tokenizer
        answers = [
            tokenizer(self.answer_text(text, target), add_special_tokens=False).input_ids
            for text, target in zip(texts, targets)
        ]
        return self._append_answers(inputs, answers, tokenizer.pad_token_id)

    @staticmethod
    def answer_text(formatted_prompt: str, target: str) -> str:
        """The target as it follows the prompt: a leading space unless the prompt ends in one."""
        return target if formatted_prompt[-1:].isspace() else " " + target

    @staticmethod
    def _append_answers(
        inputs: BatchFeature, answers: Sequence[Sequence[int]], pad_token_id: int
    ) -> BatchFeature:
        """Append answer ids to each row, re-left-pad, and add ``labels``."""
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        per_token = [
            key
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
            and value.shape == input_ids.shape
            and key not in ("input_ids", "attention_mask")
        ]
        rows: list[dict[str, torch.Tensor]] = []
        for row, answer in enumerate(answers):
            keep = attention_mask[row].bool()
            answer_ids = torch.tensor(answer, dtype=input_ids.dtype)
            fields = {
                "input_ids": torch.cat([input_ids[row][keep], answer_ids]),
                "labels": torch.cat(
                    [
                        torch.full((int(keep.sum()),), IGNORE_INDEX, dtype=torch.long),
                        answer_ids.long(),
                    ]
                ),
            }
            for key in per_token:  # e.g. Qwen's mm_token_type_ids: answers are text (0)
                value = inputs[key][row][keep]
                fields[key] = torch.cat([value, value.new_zeros(len(answer))])
            rows.append(fields)
        length = max(len(fields["input_ids"]) for fields in rows)
        pad_values = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
        out = dict(inputs)
        for key in ["input_ids", "labels", *per_token]:
            out[key] = torch.stack(
                [
                    torch.cat(
                        [
                            fields[key].new_full(
                                (length - len(fields[key]),), pad_values.get(key, 0)
                            ),
                            fields[key],
                        ]
                    )
                    for fields in rows
                ]
            )
        out["attention_mask"] = torch.stack(
            [
                torch.cat(
                    [
                        torch.zeros(length - len(f["input_ids"]), dtype=attention_mask.dtype),
                        torch.ones(len(f["input_ids"]), dtype=attention_mask.dtype),
                    ]
                )
                for f in rows
            ]
        )
        return BatchFeature(out)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a generator or experts to be valid on this model."""
        return {
            "architecture": type(self.model).__name__,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "vocab_size": self.vocab_size,
        }
