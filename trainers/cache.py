"""Reuse the frozen bottom of the VLLM across epochs.

The output of layer ``l_e`` for a training row depends only on the row (image, prompt, target),
never on the LiveEdit weights, so it can be computed once and kept. A later step that finds all
its rows cached runs only the layers above ``l_e``: layers ``0 .. l_e`` are swapped for modules
that pass the hidden states through and then inject the cached (and edited) ones, and the
vision tower is skipped (the image features only matter below ``l_e``). Positions, masks and
everything above ``l_e`` are computed by the model's own forward, as usual. A step whose batch
is only partly cached runs the layers up to ``l_e`` for the other rows alone (families whose
inputs split by row), then continues as if all were cached. Rows without a key (new
counterfactual targets, which will not come again) are computed that way and never kept.

This relies on the family's forward accepting inputs without pixel values, so the first time it
is used :class:`~hf_liveedit.trainers.LiveEditTrainingModel` checks it against the full forward
and falls back for good if they differ.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from hf_liveedit.images import image_sha256
from hf_liveedit.model import LiveEditModel

__all__ = ["HiddenStateCache", "row_key", "run_above_edit_layer"]

#: Processor outputs only the vision tower reads.
VISION_INPUTS = ("pixel_values", "pixel_attention_mask", "image_sizes")


def row_key(image: Image.Image | None, prompt: str, target: str) -> str:
    """A key that identifies a training row's model input (what layer ``l_e`` sees)."""
    digest = hashlib.sha256(image_sha256(image).encode() if image is not None else b"text")
    digest.update(f"\x1f{prompt}\x1f{target}".encode())
    return digest.hexdigest()


class HiddenStateCache:
    """Outputs of layer ``l_e`` per training row (without padding), keyed by :func:`row_key`.

    Attributes:
        fast_path: None until the first cached forward was checked against the full one, then
            whether the layers-above-``l_e`` forward is exact for this model.
    """

    def __init__(self) -> None:
        self.rows: dict[str, torch.Tensor] = {}
        self.fast_path: bool | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def store(
        self, keys: Sequence[str | None], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> None:
        """Keep each keyed row's hidden states at its attended positions."""
        for index, key in enumerate(keys):
            if key is not None and key not in self.rows:
                self.rows[key] = hidden[index, attention_mask[index].bool()].detach()

    def missing(self, keys: Sequence[str | None]) -> list[int]:
        """Indices of the rows that are not cached (rows without a key never are)."""
        return [index for index, key in enumerate(keys) if key is None or key not in self.rows]

    def lookup(
        self,
        keys: Sequence[str | None],
        attention_mask: torch.Tensor,
        computed: Mapping[int, torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """The batch's ``[B, L, d]`` hidden states, left-padded with zeros.

        Args:
            keys: the rows' keys.
            attention_mask: the batch's mask (where each row's states go).
            computed: states of rows computed for this step (by row index), used before the cache.

        Returns:
            The states, or None unless every row is found.
        """
        computed = computed or {}
        rows = []
        for index, key in enumerate(keys):
            row = computed.get(index, self.rows.get(key) if key is not None else None)
            if row is None:
                return None
            rows.append(row)
        hidden = rows[0].new_zeros((len(rows), attention_mask.shape[1], rows[0].shape[-1]))
        for index, row in enumerate(rows):
            valid = attention_mask[index].bool()
            if int(valid.sum()) != len(row):
                return None
            hidden[index, valid] = row.to(hidden.device)
        return hidden

    def complete(
        self, liveedit: LiveEditModel, inputs: dict[str, Any], keys: Sequence[str | None]
    ) -> torch.Tensor | None:
        """The batch's layer-``l_e`` states: cached rows from the cache, the others computed.

        The rows missing from the cache run through the layers up to ``l_e`` alone
        (:meth:`~hf_liveedit.LiveEditModel.hidden_states_at_edit_layer`) and are kept when they
        have a key.

        Args:
            liveedit: the model.
            inputs: the batch's model inputs.
            keys: the rows' keys (None for rows not to keep).

        Returns:
            The states, or None when rows are missing and this family's inputs cannot be split
            by row (:meth:`~hf_liveedit.backbones.BackboneSpec.select_rows`).
        """
        attention_mask = inputs["attention_mask"]
        missing = self.missing(keys)
        computed = {}
        if missing:
            subset = liveedit.backbone.select_rows(inputs, missing)
            if subset is None:
                return None
            with torch.no_grad():
                hidden = liveedit.hidden_states_at_edit_layer(subset)
            mask = subset["attention_mask"]
            self.store([keys[index] for index in missing], hidden, mask)
            computed = {row: hidden[i, mask[i].bool()] for i, row in enumerate(missing)}
        return self.lookup(keys, attention_mask, computed)


class _PassThrough(nn.Module):
    """Stands in for a decoder layer below ``l_e``: returns its input."""

    def __init__(self, original: nn.Module):
        super().__init__()
        if hasattr(original, "attention_type"):  # read by some models' layer loops
            self.attention_type = original.attention_type

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states


class _Inject(_PassThrough):
    """Stands in for layer ``l_e``: returns the given hidden states."""

    def __init__(self, original: nn.Module, hidden: torch.Tensor):
        super().__init__(original)
        self.hidden = hidden

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return self.hidden


@contextlib.contextmanager
def _layers_replaced(liveedit: LiveEditModel, hidden: torch.Tensor) -> Iterator[None]:
    layers = liveedit.backbone.decoder_layers()
    edit_layer = liveedit.liveedit_config.edit_layer
    originals = [layers[index] for index in range(edit_layer + 1)]
    try:
        for index, original in enumerate(originals[:-1]):
            layers[index] = _PassThrough(original)
        layers[edit_layer] = _Inject(originals[-1], hidden)
        yield
    finally:
        for index, original in enumerate(originals):
            layers[index] = original


def run_above_edit_layer(
    liveedit: LiveEditModel, inputs: dict[str, torch.Tensor], hidden: torch.Tensor
) -> torch.Tensor:
    """Logits of the model whose layer ``l_e`` outputs ``hidden``, computing only what is above.

    Args:
        liveedit: the model (its own edits are disabled meanwhile).
        inputs: the batch's model inputs (vision inputs are dropped).
        hidden: ``[B, L, d]`` hidden states to continue from.

    Returns:
        The model's ``logits``.
    """
    text_inputs = {key: value for key, value in inputs.items() if key not in VISION_INPUTS}
    with liveedit.disable_adapter(), _layers_replaced(liveedit, hidden):
        return liveedit.base_model(**text_inputs).logits
