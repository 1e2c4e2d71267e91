"""LiveEdit behind the :class:`Editor` interface: an edit is one :meth:`LiveEditModel.add_edit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature

from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.model import LiveEditModel


class LiveEditEditor(Editor):
    """Edits with LiveEdit: each edit stores one generated expert; no weight changes.

    Reset clears the expert repository (the generator stays). Scoring calls the
    :class:`~hf_liveedit.LiveEditModel` itself with ``labels`` in the inputs, because its hook
    excludes answer tokens from routing by them; the full logits are computed and the answer
    window is sliced afterwards.

    Args:
        liveedit: a LiveEdit-wrapped model (a trained generator, e.g. from
            :meth:`from_pretrained`).
    """

    name = "LiveEdit"

    def __init__(self, liveedit: LiveEditModel):
        super().__init__(liveedit.base_model, liveedit.processor)
        self.liveedit = liveedit

    @classmethod
    def from_pretrained(
        cls, model: nn.Module, processor: Any, adapter_dir: str | Path
    ) -> LiveEditEditor:
        """Load a trained LiveEdit adapter (generator only, no stored edits) onto ``model``."""
        return cls(
            LiveEditModel.from_pretrained(
                model, adapter_dir, processor=processor, load_experts=False
            )
        )

    def edit(self, sample: Sample) -> None:
        self.liveedit.add_edit(sample.image, sample.prompt, sample.target)

    def reset(self) -> None:
        self.liveedit.clear_edits()

    def close(self) -> None:
        self.reset()
        self.liveedit.unload()

    @torch.no_grad()
    def logits(self, inputs: BatchFeature, keep: int) -> torch.Tensor:
        return self.liveedit(**inputs, use_cache=False).logits[:, -keep:]

    @torch.no_grad()
    def generate(self, inputs: BatchFeature, max_new_tokens: int) -> torch.Tensor:
        output = self.liveedit.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        return output[:, inputs["input_ids"].shape[1] :]
