"""The interface every editor implements, so that all of them run through one code path."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import BatchFeature

from hf_liveedit.backbones import get_backbone_spec
from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.metrics import IGNORE_INDEX
from hf_liveedit.images import load_image

if TYPE_CHECKING:
    from hf_liveedit.evaluation.cases import EditCase
    from hf_liveedit.evaluation.editors.hooks import StepSpans


class Editor(ABC):
    """A model that can be edited one ``(image, prompt, target)`` at a time and reset.

    Subclasses implement :meth:`edit` and :meth:`reset`; scoring (:meth:`score`) is shared, and
    reads the edited model only through :meth:`logits` and :meth:`generate`. All editors of one
    run share the same base model object: each must leave it exactly as it found it after
    :meth:`reset` and :meth:`close`.

    Args:
        model: the base VLLM (a family :func:`hf_liveedit.get_backbone_spec` supports).
        processor: its processor.
    """

    #: Name shown in tables and plots.
    name: str = "editor"
    #: Position tracking of editors whose hooks need the prompt / answer spans.
    spans: StepSpans | None = None

    def __init__(self, model: nn.Module, processor: Any):
        self.model = model
        self.processor = processor
        self.backbone = get_backbone_spec(model, processor)
        self.device = next(model.parameters()).device
        # Batched greedy generation continues on the right, so prompts are padded on the left
        # (build_inputs already left-pads teacher-forced inputs).
        processor.tokenizer.padding_side = "left"

    # --- editing --------------------------------------------------------------------------------
    @abstractmethod
    def edit(self, sample: Sample) -> None:
        """Apply one edit on top of the edits applied so far."""

    @abstractmethod
    def reset(self) -> None:
        """Undo every edit: the model must be exactly the unedited base model again."""

    def close(self) -> None:
        """Reset and remove anything the editor attached to the base model."""
        self.reset()

    # --- reading the edited model ---------------------------------------------------------------
    def build_inputs(
        self,
        images: Sequence[Image.Image] | None,
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
    ) -> BatchFeature:
        """Inputs formatted as :meth:`hf_liveedit.LiveEditModel.build_inputs` formats them.

        Both go through the backbone adapter's ``build_inputs`` (chat template, image first,
        targets appended and marked in ``labels``, left padding).
        """
        if images is not None:
            images = [load_image(image) for image in images]
        return self.backbone.build_inputs(images, list(prompts), targets).to(self.device)

    @torch.no_grad()
    def logits(self, inputs: BatchFeature, keep: int) -> torch.Tensor:
        """Logits of the last ``keep`` positions of teacher-forced ``inputs``.

        Args:
            inputs: from :meth:`build_inputs` with targets (``labels`` mark the answer).
            keep: how many final positions to return (answers are at the end: left padding).

        Returns:
            ``[B, keep, V]`` logits.
        """
        kwargs = {key: value for key, value in inputs.items() if key != "labels"}
        # Editors whose hooks track positions still need the answer span: lend them the labels.
        answers = self.spans.answers(inputs["labels"]) if self.spans else contextlib.nullcontext()
        with answers:
            return self.model(**kwargs, use_cache=False, logits_to_keep=keep).logits

    @torch.no_grad()
    def generate(self, inputs: BatchFeature, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation of prompt-only ``inputs``; returns the new tokens ``[B, T]``."""
        output = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        return output[:, inputs["input_ids"].shape[1] :]

    def reference(
        self,
        cases: Sequence[EditCase],
        batch_size: int = 16,
        kinds: Sequence[str] | None = None,
        with_exact_match: bool = True,
    ) -> dict[int, dict[str, list[int]]]:
        """The unedited model's locality answers (call when reset); see :func:`~hf_liveedit.evaluation.scoring.locality_reference`.

        ``kinds`` None means every locality kind.
        """
        from hf_liveedit.evaluation.scoring import LOCALITY, locality_reference

        kinds = LOCALITY if kinds is None else kinds
        return locality_reference(self, cases, batch_size, kinds, with_exact_match)

    def diagnostics(self, cases: Sequence[EditCase], edited: Sequence[int]) -> dict | None:
        """Editor-specific measurements after a chunk's edits (None: this editor has none).

        Args:
            cases: the scored cases.
            edited: record indices of the chunk's edits, in the order they were applied.
        """
        return None

    def score(
        self,
        cases: Sequence[EditCase],
        reference: dict[int, dict[str, list[int]]],
        batch_size: int = 16,
        with_exact_match: bool = True,
    ) -> list[dict[str, float | None]]:
        """Score the current (edited) model on each case; see :func:`~hf_liveedit.evaluation.scoring.score_cases`."""
        from hf_liveedit.evaluation.scoring import score_cases

        return score_cases(self, cases, reference, batch_size, with_exact_match)


@contextlib.contextmanager
def train_only(model: nn.Module, parameters: Sequence[torch.Tensor]) -> Iterator[None]:
    """Within this context only ``parameters`` require grad; every flag is restored afterwards.

    Freezing the rest keeps the backward pass short and leaves no ``.grad`` on base weights.
    Parameters created inside the context (e.g. new LoRA weights) end frozen.

    Args:
        model: the model whose parameters are frozen meanwhile.
        parameters: tensors to train (model parameters or free tensors).
    """
    flags = {id(p): p.requires_grad for p in model.parameters()}
    model.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.grad = None
            parameter.requires_grad_(False)
        for parameter in model.parameters():
            parameter.requires_grad_(flags.get(id(parameter), False))


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens (the edit loss of every training baseline).

    Args:
        logits: ``[B, K, V]`` logits of the last ``K`` positions.
        labels: ``[B, L]`` labels of the full sequences (``-100`` outside the answer).

    Returns:
        The scalar loss.
    """
    labels = labels[:, -logits.shape[1] :]
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
    )
