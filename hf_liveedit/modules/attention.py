"""Multi-head cross-attention as LiveEdit uses it (no output projection)."""

from __future__ import annotations

import math

import torch
from torch import nn


class CrossAttention(nn.Module):
    """``CA(x, y) = softmax(x W_q (y W_k)^T / sqrt(d_head)) (y W_v)`` with masked keys.

    Args:
        query_dim: Width of the queries ``x``.
        key_dim: Width of the keys/values ``y``.
        attn_dim: Width of the query/key projections (split across heads).
        out_dim: Width of the value projection, i.e. of the output (split across heads).
        num_heads: Number of attention heads; must divide ``attn_dim`` and ``out_dim``.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, out_dim: int, num_heads: int):
        super().__init__()
        for name, width in (("attn_dim", attn_dim), ("out_dim", out_dim)):
            if width % num_heads:
                raise ValueError(f"{name} ({width}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(query_dim, attn_dim)
        self.k_proj = nn.Linear(key_dim, attn_dim)
        self.v_proj = nn.Linear(key_dim, out_dim)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """Attend from ``queries`` to the unmasked ``keys``.

        Args:
            queries: ``[B, Q, query_dim]``.
            keys: ``[B, L, key_dim]``.
            key_mask: ``[B, L]`` bool, True where a key may be attended.

        Returns:
            ``[B, Q, out_dim]``; rows whose sample has no unmasked key are zero.
        """
        batch, num_queries, _ = queries.shape
        heads = self.num_heads
        q = self.q_proj(queries).view(batch, num_queries, heads, -1).transpose(1, 2)
        k = self.k_proj(keys).view(batch, keys.shape[1], heads, -1).transpose(1, 2)
        v = self.v_proj(keys).view(batch, keys.shape[1], heads, -1).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        has_keys = key_mask.any(dim=1)[:, None, None, None]
        probs = torch.softmax(scores.masked_fill(~has_keys, 0.0), dim=-1) * has_keys
        return (probs @ v).transpose(1, 2).reshape(batch, num_queries, -1)
