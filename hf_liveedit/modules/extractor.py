"""The feature extractor ``f_fe``: prompt-guided visual feature ``phi`` and prompt feature ``psi``."""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention


class FeatureExtractor(nn.Module):
    """``phi = CA_phi2(CA_phi1(Q_phi, LN1(h_p)), LN1(h_v))`` and ``psi = CA_psi(Q_psi, LN2(h_p))``.

    The prompt first decides what to look for (``CA_phi1``), then it is looked for in the image
    tokens (``CA_phi2``). LiveEdit has two extractors with separate weights: one for edits and
    one for incoming inputs.

    Args:
        hidden_size: ``d``.
        module_dim: ``d_m``.
        num_queries: ``k``.
        num_heads: Attention heads.
    """

    def __init__(self, hidden_size: int, module_dim: int, num_queries: int, num_heads: int):
        super().__init__()
        self.visual_norm = nn.LayerNorm(hidden_size)
        self.prompt_norm = nn.LayerNorm(hidden_size)
        self.visual_queries = nn.Parameter(torch.randn(num_queries, module_dim) / module_dim**0.5)
        self.prompt_queries = nn.Parameter(torch.randn(num_queries, module_dim) / module_dim**0.5)
        self.look_for = CrossAttention(module_dim, hidden_size, module_dim, module_dim, num_heads)
        self.look_in = CrossAttention(module_dim, hidden_size, module_dim, module_dim, num_heads)
        self.prompt_attention = CrossAttention(
            module_dim, hidden_size, module_dim, module_dim, num_heads
        )

    def visual_query(self, hidden: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """``CA_phi1(Q_phi, LN1(h_p))``: what the prompt asks to look for, ``[B, k, d_m]``."""
        queries = self.visual_queries.expand(hidden.shape[0], -1, -1)
        return self.look_for(queries, self.visual_norm(hidden), prompt_mask)

    def visual_feature(
        self, query: torch.Tensor, visual: torch.Tensor, visual_mask: torch.Tensor
    ) -> torch.Tensor:
        """``CA_phi2(query, LN1(visual))``: ``phi`` for the given visual tokens, ``[B, k, d_m]``."""
        return self.look_in(query, self.visual_norm(visual), visual_mask)

    def prompt_feature(self, hidden: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """``psi = CA_psi(Q_psi, LN2(h_p))``, ``[B, k, d_m]``."""
        queries = self.prompt_queries.expand(hidden.shape[0], -1, -1)
        return self.prompt_attention(queries, self.prompt_norm(hidden), prompt_mask)
