"""GRACE (Hartvigsen et al., NeurIPS 2023): a codebook of layer keys, radii and values.

GRACE wraps one module, here the ``mlp.down_proj`` of decoder layer ``layer`` (default two
thirds of the depth, as LiveEdit's edit layer; EasyEdit's LLaVA-OneVision config uses layer 18
of 28). The key of an input is the module's input at the input's **last prompt token** (the
token before the answer); when it lies within the radius of the nearest codebook key, the
module's output at that token is replaced by that key's value ("replace_last"). Decoding steps
after the prompt are left alone, so generation and teacher forcing see the same replacement.

An edit (EasyEdit's hyper-parameters for VLLMs: ``eps`` 1.0, Euclidean distance, cold value
init, Adam lr 1.0, 20 steps, "coverage" radius expansion):

- no key within ``eps + radius`` of the query: add the query as a new key, radius ``eps``;
- the nearest key is that close and has the same target: grow its radius to the distance;
- it is that close but has another target: add the query as a new key and set both radii to
  half the distance (the "split");
- then train the value of the key the query now falls in on the target's cross-entropy.

Reset empties the codebook; the base weights are never touched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.editors.base import Editor, answer_loss, train_only
from hf_liveedit.evaluation.editors.hooks import LayerTail, StepSpans
from hf_liveedit.evaluation.metrics import answer_window


class _Codebook:
    """Forward hook on the wrapped module: replace the last prompt token's output on a hit."""

    def __init__(self, spans: StepSpans, key_size: int, value_size: int, device: torch.device):
        self.spans = spans
        self.keys = torch.zeros(0, key_size, device=device)
        self.values = torch.zeros(0, value_size, device=device)
        self.radii = torch.zeros(0, device=device)
        self.targets: list[str] = []
        self.trained: tuple[int, torch.Tensor] | None = None
        self.last_query: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.spans.decoding:
            return output
        rows = torch.arange(output.shape[0], device=output.device)
        position = self.spans.last_prompt_position()
        query = args[0][rows, position].float()
        self.last_query = query.detach()
        if len(self.keys) == 0:
            return output
        distance, nearest = torch.cdist(query, self.keys).min(dim=1)
        hit = distance <= self.radii[nearest]
        values = self.values
        if self.trained is not None:
            index, value = self.trained
            values = torch.cat([values[:index], value[None], values[index + 1 :]])
        current = output[rows, position]
        replaced = torch.where(hit[:, None], values[nearest].to(output.dtype), current)
        output = output.clone()
        output[rows, position] = replaced
        return output

    def clear(self) -> None:
        self.keys, self.values, self.radii = self.keys[:0], self.values[:0], self.radii[:0]
        self.targets = []


class GraceEditor(Editor):
    """GRACE codebook editing at one decoder layer's MLP output projection.

    Args:
        model: the base VLLM (Llama-style MLP with ``down_proj``).
        processor: its processor.
        layer: decoder layer index (default ``int(num_layers * 2 / 3)``).
        eps: initial radius of a new key.
        lr: Adam learning rate of the value.
        steps: optimisation steps per edit.
    """

    name = "GRACE"

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        layer: int | None = None,
        eps: float = 1.0,
        lr: float = 1.0,
        steps: int = 20,
    ):
        super().__init__(model, processor)
        self.layer = int(self.backbone.num_layers * 2 / 3) if layer is None else layer
        self.eps, self.lr, self.steps = eps, lr, steps
        module = self.backbone.decoder_layers()[self.layer].mlp.down_proj
        self.spans = StepSpans(self.backbone)
        self.codebook = _Codebook(self.spans, module.in_features, module.out_features, self.device)
        self.tail = LayerTail(model, self.backbone, self.layer)
        self._handle = module.register_forward_hook(self.codebook)

    def edit(self, sample: Sample) -> None:
        inputs = self.build_inputs([sample.image], [sample.prompt], [sample.target])
        labels = inputs["labels"]
        keep = answer_window(labels)
        with self.spans.answers(labels):
            captured = self.tail.capture(inputs)
        with torch.no_grad():  # the query does not depend on the codebook (it is the input)
            self.tail.logits(captured, keep)
        index = self._update_codebook(self.codebook.last_query[0], sample.target)
        value = self.codebook.values[index].clone()
        optimizer = torch.optim.Adam([value], lr=self.lr)
        self.codebook.trained = (index, value)
        try:
            with train_only(self.model, [value]):
                for _ in range(self.steps):
                    optimizer.zero_grad()
                    answer_loss(self.tail.logits(captured, keep), labels).backward()
                    optimizer.step()
        finally:
            self.codebook.trained = None
        self.codebook.values[index] = value.detach()

    def _update_codebook(self, query: torch.Tensor, target: str) -> int:
        """Apply GRACE's key rules for ``query``; return the index of the value to train."""
        book = self.codebook
        if len(book.keys):
            distance, nearest = (book.keys - query).norm(dim=1).min(dim=0)
            nearest = int(nearest)
            if distance <= self.eps + book.radii[nearest]:
                if book.targets[nearest] == target:
                    book.radii[nearest] = torch.maximum(book.radii[nearest], distance)
                    return nearest
                book.radii[nearest] = distance / 2
                return self._add_key(query, target, radius=float(distance) / 2)
        return self._add_key(query, target, radius=self.eps)

    def _add_key(self, query: torch.Tensor, target: str, radius: float) -> int:
        book = self.codebook
        cold = torch.rand(1, book.values.shape[1], device=self.device)
        book.keys = torch.cat([book.keys, query[None]])
        book.values = torch.cat([book.values, cold])
        book.radii = torch.cat([book.radii, book.radii.new_tensor([radius])])
        book.targets.append(target)
        return len(book.targets) - 1

    def reset(self) -> None:
        self.codebook.clear()

    def close(self) -> None:
        self.reset()
        self._handle.remove()
        self.spans.remove()
