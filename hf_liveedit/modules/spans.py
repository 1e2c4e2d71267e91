"""Which positions of a sequence are image, prompt and answer tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Spans:
    """Boolean position masks, each ``[B, L]``, of one batch of sequences.

    Attributes:
        image: image tokens (``h_v``).
        prompt: prompt text tokens after the image (``h_p``); never answer or padding tokens.
        answer: answer tokens (``h_o``): present for edits and teacher-forced scoring only.
    """

    image: torch.Tensor
    prompt: torch.Tensor
    answer: torch.Tensor

    @property
    def has_image(self) -> torch.Tensor:
        """``[B]`` bool: whether each sequence contains image tokens."""
        return self.image.any(dim=1)

    def select(self, index: torch.Tensor | slice) -> Spans:
        """Return the spans of a subset of the batch."""
        return Spans(self.image[index], self.prompt[index], self.answer[index])
