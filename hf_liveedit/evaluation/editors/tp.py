"""TP: Transformer-Patcher (Huang et al., ICLR 2023), one new FFN neuron per edit.

The patch sits in the FFN of the last decoder layer: for the FFN input ``x`` at every position,
``FFN(x) + sum_i ReLU(x . k_i + b_i) v_i``. Each edit adds one neuron ``(k, b, v)`` and trains
only that neuron (Adam, lr 1e-2, 25 steps: the LiveEdit paper's setting); earlier neurons stay
frozen. The loss is Transformer-Patcher's:

- edit loss: cross-entropy of the target tokens;
- activation loss: ``ReLU(margin - (x . k + b))`` at the positions that predict the target, so the
  neuron fires on the edit;
- memory loss: ``ReLU(x . k + b + margin)`` on a memory of unrelated FFN inputs, so it stays
  silent elsewhere. The memory holds this edit's other positions (system text, image, prompt
  tokens that predict no target) and the target-predicting positions of the earlier edits of
  the chunk, so a new neuron does not overwrite older edits (at most ``memory_size`` vectors,
  the newest kept). Weights 1 for both extra losses; margin 1.

Initialisation: ``k`` the unit mean of the edit's target-predicting inputs ``q``,
``b = -||q|| / 2`` (so the neuron starts active near ``q``), ``v = 0`` (so it starts as a no-op).
ReLU gives a neuron that is exactly zero where it does not fire (the backbone's own FFN uses a
gated SiLU, which has no silent region). Only the last layer changes, so training re-runs just
that layer (:class:`~hf_liveedit.evaluation.editors.hooks.LayerTail`). Reset removes every
neuron; the base weights are never touched.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.editors.base import Editor, answer_loss, train_only
from hf_liveedit.evaluation.editors.hooks import LayerTail
from hf_liveedit.evaluation.metrics import IGNORE_INDEX, answer_window


class _Patch:
    """Forward hook on the FFN adding the patch neurons' output."""

    def __init__(self, input_size: int, output_size: int, device: torch.device):
        self.keys = torch.zeros(0, input_size, device=device)
        self.biases = torch.zeros(0, device=device)
        self.values = torch.zeros(0, output_size, device=device)
        self.training: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.inputs: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        keys, biases, values = self.keys, self.biases, self.values
        if self.training is not None:
            key, bias, value = self.training
            keys = torch.cat([keys, key[None]])
            biases = torch.cat([biases, bias[None]])
            values = torch.cat([values, value[None]])
            self.inputs = x
        if len(keys) == 0:
            return output
        return output + F.relu(x @ keys.T.to(x.dtype) + biases.to(x.dtype)) @ values.to(x.dtype)

    def clear(self) -> None:
        self.keys, self.biases, self.values = self.keys[:0], self.biases[:0], self.values[:0]


class TPEditor(Editor):
    """Transformer-Patcher: one trained ReLU neuron per edit in the last FFN.

    Args:
        model: the base VLLM.
        processor: its processor.
        lr: Adam learning rate.
        steps: optimisation steps per edit.
        margin: margin of the activation and memory losses.
        memory_size: most memory vectors kept.
    """

    name = "TP"

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        lr: float = 1e-2,
        steps: int = 25,
        margin: float = 1.0,
        memory_size: int = 4096,
    ):
        super().__init__(model, processor)
        self.lr, self.steps, self.margin, self.memory_size = lr, steps, margin, memory_size
        layer = self.backbone.decoder_layers()[-1]
        hidden = self.backbone.hidden_size
        self.tail = LayerTail(model, self.backbone, self.backbone.num_layers - 1)
        self.patch = _Patch(hidden, hidden, self.device)
        self.memory = torch.zeros(0, hidden, device=self.device)
        self._handle = layer.mlp.register_forward_hook(self.patch)

    def edit(self, sample: Sample) -> None:
        inputs = self.build_inputs([sample.image], [sample.prompt], [sample.target])
        labels = inputs["labels"]
        keep = answer_window(labels)
        captured = self.tail.capture(inputs)
        # Positions whose logits predict a target token (labels are read one step ahead).
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        valid = inputs["attention_mask"].bool()
        # The FFN input does not depend on the patch: read it from one pass with a no-op neuron.
        hidden = self.backbone.hidden_size
        zero = torch.zeros(hidden, device=self.device)
        self.patch.training = (zero, zero.new_zeros(()), zero)
        with torch.no_grad():
            self.tail.logits(captured, keep)
        x = self.patch.inputs.float()
        query = x[predicts].mean(dim=0)
        memory = torch.cat([self.memory, x[valid & ~predicts]])
        key = query / query.norm()
        bias = -query.norm() / 2
        value = torch.zeros(hidden, device=self.device)
        optimizer = torch.optim.Adam([key, bias, value], lr=self.lr)
        self.patch.training = (key, bias, value)
        try:
            with train_only(self.model, [key, bias, value]):
                for _ in range(self.steps):
                    optimizer.zero_grad()
                    loss = answer_loss(self.tail.logits(captured, keep), labels)
                    active = x[predicts] @ key + bias
                    loss = loss + F.relu(self.margin - active).mean()
                    loss = loss + F.relu(memory @ key + bias + self.margin).mean()
                    loss.backward()
                    optimizer.step()
        finally:
            self.patch.training, self.patch.inputs = None, None
        patch = self.patch
        patch.keys = torch.cat([patch.keys, key.detach()[None]])
        patch.biases = torch.cat([patch.biases, bias.detach()[None]])
        patch.values = torch.cat([patch.values, value.detach()[None]])
        self.memory = torch.cat([self.memory, x[predicts]])[-self.memory_size :]

    def reset(self) -> None:
        self.patch.clear()
        self.memory = self.memory[:0]

    def close(self) -> None:
        self.reset()
        self._handle.remove()
