"""Fine-tuning baselines: FT-L (last language-model layer) and FT-M (the vision side).

Each edit runs ``steps`` AdamW steps (lr 1e-3, 25 steps: the LiveEdit paper's setting; torch's
default weight decay 0.01) on the cross-entropy of the target tokens of the edit sample, on top
of the previous edits (sequential editing: the weights keep every earlier update). A fresh
optimizer is made for each edit. Reset copies back the original values of the trained
parameters, kept from construction (only those are copied), so the base model is restored
bit for bit.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature

from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.editors.base import Editor, answer_loss, train_only
from hf_liveedit.evaluation.editors.hooks import LayerTail
from hf_liveedit.evaluation.metrics import answer_window


class FineTuneEditor(Editor):
    """Fine-tune one group of the base model's parameters on each edit.

    Args:
        model: the base VLLM.
        processor: its processor.
        lr: AdamW learning rate.
        steps: optimisation steps per edit.
    """

    def __init__(self, model: nn.Module, processor: Any, lr: float = 1e-3, steps: int = 25):
        super().__init__(model, processor)
        self.lr, self.steps = lr, steps
        self.trained = list(self.trained_module().parameters())
        self.original = [p.detach().clone() for p in self.trained]

    @abstractmethod
    def trained_module(self) -> nn.Module:
        """The module whose parameters are fine-tuned."""

    @abstractmethod
    def edit_loss_fn(self, inputs: BatchFeature) -> Callable[[], torch.Tensor]:
        """A function of no arguments returning the edit loss under the current weights."""

    def edit(self, sample: Sample) -> None:
        inputs = self.build_inputs([sample.image], [sample.prompt], [sample.target])
        loss_fn = self.edit_loss_fn(inputs)
        optimizer = torch.optim.AdamW(self.trained, lr=self.lr)
        with train_only(self.model, self.trained):
            for _ in range(self.steps):
                optimizer.zero_grad()
                loss_fn().backward()
                optimizer.step()

    @torch.no_grad()
    def reset(self) -> None:
        for parameter, original in zip(self.trained, self.original):
            parameter.copy_(original)


class FTLEditor(FineTuneEditor):
    """FT-L: fine-tune the MLP of the last decoder layer of the language model.

    The MLP (not the attention) follows EasyEdit's FT convention of rewriting MLP weights. Only
    the last layer changes, so its input is computed once per edit and each step re-runs that
    layer alone (:class:`~hf_liveedit.evaluation.editors.hooks.LayerTail`).
    """

    name = "FT-L"

    def __init__(self, model: nn.Module, processor: Any, lr: float = 1e-3, steps: int = 25):
        super().__init__(model, processor, lr, steps)
        self.tail = LayerTail(model, self.backbone, self.backbone.num_layers - 1)

    def trained_module(self) -> nn.Module:
        return self.backbone.decoder_layers()[-1].mlp

    def edit_loss_fn(self, inputs: BatchFeature) -> Callable[[], torch.Tensor]:
        captured = self.tail.capture(inputs)
        keep = answer_window(inputs["labels"])
        return lambda: answer_loss(self.tail.logits(captured, keep), inputs["labels"])


class FTMEditor(FineTuneEditor):
    """FT-M: fine-tune the vision side, i.e. the multimodal projector of a LLaVA-style model.

    The gradient has to flow through the whole language model to reach the projector, so every
    step is a full forward and backward pass.
    """

    name = "FT-M"

    def trained_module(self) -> nn.Module:
        projector = getattr(getattr(self.model, "model", None), "multi_modal_projector", None)
        if projector is None:
            raise TypeError(
                f"FT-M fine-tunes a LLaVA-style `model.multi_modal_projector`; "
                f"{type(self.model).__name__} has none"
            )
        return projector

    def edit_loss_fn(self, inputs: BatchFeature) -> Callable[[], torch.Tensor]:
        kwargs = {key: value for key, value in inputs.items() if key != "labels"}
        keep = answer_window(inputs["labels"])

        def loss() -> torch.Tensor:
            logits = self.model(**kwargs, use_cache=False, logits_to_keep=keep).logits
            return answer_loss(logits, inputs["labels"])

        return loss
