"""The expert generator ``f_eg``: edit hidden states -> low-rank expert ``(U, V)``."""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention
from .spans import Spans


class ExpertGenerator(nn.Module):
    """``U = CA_U(Q_U, x) * c`` and ``V = CA_V(Q_V, x) * c`` with ``x = LN(h_v ⊕ h_p ⊕ h_o)``.

    Args:
        hidden_size: ``d``, the language model's hidden size.
        module_dim: ``d_m``.
        rank: ``r``.
        num_heads: Attention heads.
        scale: ``c``.
    """

    def __init__(self, hidden_size: int, module_dim: int, rank: int, num_heads: int, scale: float):
        super().__init__()
        self.scale = scale
        self.norm = nn.LayerNorm(hidden_size)
        self.up_queries = nn.Parameter(torch.randn(rank, module_dim) / module_dim**0.5)
        self.down_queries = nn.Parameter(torch.randn(rank, module_dim) / module_dim**0.5)
        self.up_attention = CrossAttention(
            module_dim, hidden_size, module_dim, hidden_size, num_heads
        )
        self.down_attention = CrossAttention(
            module_dim, hidden_size, module_dim, hidden_size, num_heads
        )

    def forward(self, hidden: torch.Tensor, spans: Spans) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate one expert per sequence.

        Args:
            hidden: ``[B, L, d]`` output of layer ``l_e`` on image + prompt + answer.
            spans: positions of the image, prompt and answer tokens.

        Returns:
            ``(U, V)``, each ``[B, r, d]``.
        """
        keys = self.norm(hidden)
        mask = spans.image | spans.prompt | spans.answer
        batch = hidden.shape[0]
        up = self.up_attention(self.up_queries.expand(batch, -1, -1), keys, mask)
        down = self.down_attention(self.down_queries.expand(batch, -1, -1), keys, mask)
        return up * self.scale, down * self.scale
