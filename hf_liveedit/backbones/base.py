"""The interface between LiveEdit and one family of Hugging Face VLLMs.

Everything family-specific lives behind :class:`BackboneSpec`: where decoder layer ``l_e``
is, which token ids form the image block, how the processor is called and how prompts are
formatted. Supporting a new family means one new file with one subclass, registered in
``hf_liveedit/backbones/__init__.py``.

Prompts are formatted with the processor's chat template when it has one; otherwise with the
family's documented default, :attr:`BackboneSpec.prompt_format` with
:attr:`BackboneSpec.image_format` standing for the image (e.g. LLaVA-1.5's
``"USER: <image>\n{prompt} ASSISTANT:"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature

from ..modules import Spans

IGNORE_INDEX = -100


class BackboneSpec(ABC):
    """Family-specific knowledge LiveEdit needs about a VLLM.

    Args:
        model: the VLLM (an instance of one of :attr:`model_class_names` or of a subclass, or a
            model whose ``config.model_type`` is one of :attr:`model_types`).
        processor: its processor; needed to build edit inputs, optional otherwise.
    """

    #: transformers class names this spec supports (subclasses of them too).
    model_class_names: ClassVar[tuple[str, ...]] = ()
    #: ``config.model_type`` values of those classes, for models of other classes (e.g. remote
    #: code) built on the same config.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: sentinel size used when the family has no fixed image token count.
    default_image_tokens: ClassVar[int] = 64
    #: One user turn, ending where the answer starts, used when the processor has no chat
    #: template: ``{image}`` is replaced by :meth:`image_placeholder` (by nothing for text-only
    #: prompts) and ``{prompt}`` by the user's prompt.
    prompt_format: ClassVar[str] = "{image}{prompt}"
    #: What stands for one image in :attr:`prompt_format`; ``{token}`` is the processor's
    #: ``image_token`` (the placeholder its ``__call__`` expands into the image block).
    image_format: ClassVar[str] = "{token}"
    #: Values that per-token processor outputs (``input_ids``-shaped, e.g. ``token_type_ids``)
    #: take on appended answer tokens; any other such output is 0 there ("text").
    answer_token_values: ClassVar[dict[str, int]] = {}
    #: Processor outputs that may happen to be ``input_ids``-shaped without being aligned with it
    #: (e.g. InstructBLIP's Q-Former copy of the prompt): answers are never appended to them.
    unaligned_keys: ClassVar[frozenset[str]] = frozenset()
    #: Whether every tensor the processor returns holds one entry per row along its first
    #: dimension, so that some rows of a batch can be run apart (:meth:`select_rows`); False for
    #: families that flatten image patches across the batch (Qwen2-VL).
    row_aligned_inputs: ClassVar[bool] = True

    def __init__(self, model: nn.Module, processor: Any | None = None):
        self.model = model
        self.processor = processor
        self.check_processor()

    def check_processor(self) -> None:
        """Refuse a processor whose image placeholder is not this model's (e.g. another family's).

        Raises:
            ValueError: the processor's image token maps to another id than the model expects.
        """
        token = self.processor_image_token()
        tokenizer = getattr(self.processor, "tokenizer", None)
        if not isinstance(token, str) or tokenizer is None:
            return
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id != self.image_token_id:
            raise ValueError(
                f"The processor ({type(self.processor).__name__}) marks images with {token!r} "
                f"(id {token_id}), but {type(self.model).__name__} expects image token id "
                f"{self.image_token_id}: pass the processor that belongs to this model"
            )

    def processor_image_token(self) -> Any:
        """The token the processor fills the image block with (None when it has none to check)."""
        return getattr(self.processor, "image_token", None)

    @property
    def architecture(self) -> str:
        """The supported class ``model`` is or derives from (its own class name otherwise).

        A user subclass fingerprints as its supported base class, so adapters saved on one load
        on the other.
        """
        names = set(self.model_class_names)
        supported = (cls.__name__ for cls in type(self.model).__mro__ if cls.__name__ in names)
        return next(supported, type(self.model).__name__)

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
        """The text given to the processor for one user turn, ending where the answer starts.

        The processor's chat template formats it when there is one (a one-turn user message with
        the image first, then the generation prompt); otherwise :attr:`prompt_format` does.

        Args:
            prompt: the user's prompt.
            with_image: whether the turn has an image (placed before the prompt).
        """
        processor = self.require_processor()
        if not getattr(processor, "chat_template", None):
            image = self.image_placeholder() if with_image else ""
            return self.prompt_format.format(image=image, prompt=prompt)
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def image_placeholder(self) -> str:
        """What stands for one image in :attr:`prompt_format` (:attr:`image_format` filled in)."""
        token = getattr(self.require_processor(), "image_token", None)
        return self.image_format.format(token=token or "")

    def process(self, images: Sequence[Image.Image] | None, texts: Sequence[str]) -> BatchFeature:
        """Call the processor on formatted texts (and their images)."""
        processor = self.require_processor()
        if images is None:
            return processor.tokenizer(list(texts), return_tensors="pt", padding=True)
        # One list per text: processors that take several images per sample (Gemma 3) read a flat
        # list as all of the first sample's images; the others give the same result either way.
        nested = [[image] for image in images]
        return processor(images=nested, text=list(texts), return_tensors="pt", padding=True)

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

    def select_rows(self, inputs: Mapping[str, Any], rows: Sequence[int]) -> dict[str, Any] | None:
        """The model inputs of some rows of a batch (non-tensor values as they are).

        Args:
            inputs: a batch's model inputs (from :meth:`build_inputs`, plus any call options).
            rows: indices of the rows to keep, in the order wanted.

        Returns:
            The inputs of those rows, or None when this family's inputs are not split by row
            (:attr:`row_aligned_inputs`, or a tensor whose first dimension is not the batch's).
        """
        if not self.row_aligned_inputs:
            return None
        batch = inputs["input_ids"].shape[0]
        selected = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                if value.dim() == 0 or value.shape[0] != batch:
                    return None
                value = value[torch.as_tensor(rows, dtype=torch.long, device=value.device)]
            selected[key] = value
        return selected

    @staticmethod
    def answer_text(formatted_prompt: str, target: str) -> str:
        """The target as it follows the prompt: a leading space unless the prompt ends in one."""
        return target if formatted_prompt[-1:].isspace() else " " + target

    def _append_answers(
        self, inputs: BatchFeature, answers: Sequence[Sequence[int]], pad_token_id: int
    ) -> BatchFeature:
        """Append answer ids to each row, re-left-pad, and add ``labels``."""
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        per_token = [
            key
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
            and value.shape == input_ids.shape
            and key not in ("input_ids", "attention_mask", "labels")  # labels are rebuilt
            and key not in self.unaligned_keys
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
                fill = self.answer_token_values.get(key, 0)
                fields[key] = torch.cat([value, value.new_full((len(answer),), fill)])
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
            "architecture": self.architecture,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "vocab_size": self.vocab_size,
        }
