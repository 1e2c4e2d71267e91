"""All trainable LiveEdit modules in one container (what a generator checkpoint holds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from ..config import LiveEditConfig
from .extractor import FeatureExtractor
from .generator import ExpertGenerator
from .image_key import ImageKey
from .spans import Spans


@dataclass
class ExpertBatch:
    """Experts made from a batch of edits: ``U``/``V`` ``[B, r, d]``, ``phi``/``psi`` ``[B, k, d_m]``."""

    up: torch.Tensor
    down: torch.Tensor
    phi: torch.Tensor
    psi: torch.Tensor

    @classmethod
    def cat(cls, batches: Sequence[ExpertBatch]) -> ExpertBatch:
        """The experts of several batches, in order."""
        return cls(*(torch.cat([getattr(batch, f.name) for batch in batches]) for f in fields(cls)))


@dataclass
class InputFeatures:
    """Input-side routing features, each ``[B, k, d_m]``, and which inputs may be routed."""

    phi: torch.Tensor
    psi: torch.Tensor
    phi_sentinel: torch.Tensor
    routable: torch.Tensor


class LiveEditModules(nn.Module):
    """Generator, edit-side and input-side extractors, vision sentinel and expert LayerNorm.

    Args:
        config: the adapter's configuration.
        hidden_size: ``d`` of the language model.
        num_sentinel_tokens: ``N_v``, rows of the vision sentinel.
    """

    def __init__(self, config: LiveEditConfig, hidden_size: int, num_sentinel_tokens: int):
        super().__init__()
        self.edit_text_only_inputs = config.edit_text_only_inputs
        self.soft_routing_visual_weight = config.soft_routing_visual_weight
        self.generator = ExpertGenerator(
            hidden_size, config.module_dim, config.rank, config.num_heads, config.scale
        )
        self.edit_extractor = FeatureExtractor(
            hidden_size, config.module_dim, config.num_queries, config.num_heads
        )
        self.input_extractor = FeatureExtractor(
            hidden_size, config.module_dim, config.num_queries, config.num_heads
        )
        self.sentinel = nn.Parameter(torch.randn(num_sentinel_tokens, hidden_size))
        self.expert_norm = nn.LayerNorm(hidden_size)
        # only with image-key routing, so paper-style checkpoints keep their exact state dict
        self.image_key = (
            ImageKey(hidden_size, config.image_key_positions, config.num_queries, config.module_dim)
            if config.hard_routing == "image_key"
            else None
        )
        self.image_key_threshold = config.image_key_threshold

    def make_experts(self, hidden: torch.Tensor, spans: Spans) -> ExpertBatch:
        """Generate ``(U, V)`` and the stored routing features ``(phi_e, psi_e)`` for each edit.

        Args:
            hidden: ``[B, L, d]`` output of layer ``l_e`` on image + prompt + answer.
            spans: image / prompt / answer positions.
        """
        hidden = hidden.to(self.sentinel.dtype)
        up, down = self.generator(hidden, spans)
        return ExpertBatch(up, down, *self.edit_features(hidden, spans))

    def edit_features(
        self, hidden: torch.Tensor, spans: Spans
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The routing features ``(phi_e, psi_e)`` stored with each edit, ``[B, k, d_m]`` each.

        Args:
            hidden: ``[B, L, d]`` output of layer ``l_e`` (answer positions are not read).
            spans: image / prompt positions.
        """
        hidden = hidden.to(self.sentinel.dtype)
        extractor = self.edit_extractor
        if self.image_key is not None:
            phi = self.image_key(hidden, spans.image)
        else:
            phi = extractor.visual_feature(
                extractor.visual_query(hidden, spans.prompt), hidden, spans.image
            )
        return phi, extractor.prompt_feature(hidden, spans.prompt)

    def input_features(self, hidden: torch.Tensor, spans: Spans) -> InputFeatures:
        """Routing features of incoming inputs (answer tokens are never part of the spans).

        Text-only inputs are not routable unless ``edit_text_only_inputs``; then the sentinel
        stands in for their missing image tokens.
        """
        hidden = hidden.to(self.sentinel.dtype)
        extractor = self.input_extractor
        has_image = spans.has_image
        routable = has_image if not self.edit_text_only_inputs else torch.ones_like(has_image)
        psi = extractor.prompt_feature(hidden, spans.prompt)
        if self.image_key is not None:
            # cos(key_in, key_e) > threshold, in the sentinel's form (see ImageKey); text-only
            # inputs get a zero key, so they keep nothing
            phi = self.image_key(hidden, spans.image)
            return InputFeatures(phi, psi, self.image_key_threshold * phi, routable)
        batch = hidden.shape[0]
        query = extractor.visual_query(hidden, spans.prompt)
        sentinel = self.sentinel.expand(batch, -1, -1)
        sentinel_mask = torch.ones(sentinel.shape[:2], dtype=torch.bool, device=hidden.device)
        phi_sentinel = extractor.visual_feature(query, sentinel, sentinel_mask)
        phi = extractor.visual_feature(query, hidden, spans.image)
        phi = torch.where(has_image[:, None, None], phi, phi_sentinel)
        return InputFeatures(phi, psi, phi_sentinel, routable)
