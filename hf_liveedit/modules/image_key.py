"""The image key: a fingerprint of the picture at layer ``l_e`` for the ``image_key`` hard filter.

With ``LiveEditConfig.hard_routing = "image_key"`` (beyond the paper) the hard filter keeps an
expert iff the cosine between the input's image key and the edit's image key exceeds
``image_key_threshold``. The key reads only the image tokens' states, which on backbones that
put the image before the prompt are the same for every question about one picture, so an edit's
own picture (asked in any phrasing) scores ~1 while another entity's picture scores far lower.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageKey", "pool_image_tokens"]


def pool_image_tokens(hidden: torch.Tensor, image: torch.Tensor, positions: int) -> torch.Tensor:
    """Average each row's image tokens into ``positions`` consecutive segments.

    The segments are those of ``torch.nn.functional.adaptive_avg_pool1d`` over the row's image
    tokens in order, so backbones whose image token count varies (per image or per resolution)
    get keys of one size.

    Args:
        hidden: ``[B, L, d]`` states.
        image: ``[B, L]`` bool, image positions.
        positions: ``G``, segments per row.

    Returns:
        ``[B, G, d]`` float32 segment means (zeros for rows without image tokens).
    """
    mask = image.bool()
    count = mask.sum(dim=1, keepdim=True)  # [B, 1]
    rank = mask.long().cumsum(dim=1) - 1  # index among the row's image tokens
    segment = torch.arange(positions, device=hidden.device)[None, :]  # [1, G]
    start = torch.div(segment * count, positions, rounding_mode="floor")
    end = torch.div((segment + 1) * count + positions - 1, positions, rounding_mode="floor")
    member = (
        mask[:, None, :]
        & (rank[:, None, :] >= start[..., None])
        & (rank[:, None, :] < end[..., None])
    ).float()  # [B, G, L]
    sums = member @ hidden.float()
    return sums / member.sum(dim=-1, keepdim=True).clamp_min(1.0)


class ImageKey(nn.Module):
    """``key = scale * normalize(flatten(normalize(pool(h_v) - center) @ projection))``.

    Image tokens are pooled into ``G`` segments; each segment's mean state is centred (the mean
    over training pictures: the states share a large common component), normalised so every
    segment counts alike, and projected to ``p`` dimensions (principal directions of training
    pictures); the ``G * p = k * d_m`` values are laid out as a ``[k, d_m]`` feature scaled so
    that LiveEdit's similarity of two keys is their cosine. Hence the hard filter's usual form
    ``sim(phi_in, phi_e) > sim(phi_in, phi_sentinel)`` (and the Triton kernel) implement
    ``cos > threshold`` with ``phi_sentinel = threshold * phi_in``.

    ``center`` and ``projection`` are buffers (saved with the generator, moved with the model);
    :meth:`fit` sets them from training pictures. Unfitted, the key uses no centring and a fixed
    random orthonormal projection, which separates pictures poorly.

    Args:
        hidden_size: ``d``.
        positions: ``G``.
        num_queries: ``k``.
        module_dim: ``d_m``; ``k * d_m`` must be divisible by ``G``.
    """

    def __init__(self, hidden_size: int, positions: int, num_queries: int, module_dim: int):
        super().__init__()
        width, remainder = divmod(num_queries * module_dim, positions)
        if remainder:
            raise ValueError(
                f"num_queries * module_dim ({num_queries * module_dim}) must be divisible by "
                f"image_key_positions ({positions})"
            )
        self.positions, self.num_queries, self.module_dim = positions, num_queries, module_dim
        generator = torch.Generator().manual_seed(0)
        random = torch.randn(hidden_size, max(width, hidden_size), generator=generator)
        projection = torch.linalg.qr(random)[0][:, :width] if width <= hidden_size else random
        self.register_buffer("center", torch.zeros(positions, hidden_size))
        self.register_buffer("projection", projection.contiguous())
        self.register_buffer("num_fitted", torch.zeros((), dtype=torch.long))

    def _segments(self, hidden: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = pool_image_tokens(hidden, image, self.positions) - self.center.float()
        return F.normalize(pooled, dim=-1)

    def forward(self, hidden: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Image keys ``[B, k, d_m]`` (zeros for rows without image tokens), in ``hidden``'s dtype.

        Args:
            hidden: ``[B, L, d]`` layer-``l_e`` states.
            image: ``[B, L]`` bool, image positions.
        """
        flat = (self._segments(hidden, image) @ self.projection.float()).flatten(1)
        scale = math.sqrt(self.num_queries * math.sqrt(self.module_dim))
        key = F.normalize(flat, dim=-1) * scale * image.any(dim=1, keepdim=True)
        return key.view(-1, self.num_queries, self.module_dim).to(hidden.dtype)

    @torch.no_grad()
    def fit(self, hidden: torch.Tensor, image: torch.Tensor, chunk: int = 256) -> None:
        """Set ``center`` and ``projection`` from training pictures' states.

        Args:
            hidden: ``[N, L, d]`` layer-``l_e`` states of training edit inputs (one per picture
                is enough; repeats only reweight).
            image: ``[N, L]`` bool, their image positions.
            chunk: rows per pooling pass (memory).
        """
        rows = image.any(dim=1)
        hidden, image = hidden[rows], image[rows]
        if not len(hidden):
            raise ValueError("fitting the image key needs states with image tokens")
        pooled = torch.cat(
            [
                pool_image_tokens(hidden[i : i + chunk], image[i : i + chunk], self.positions)
                for i in range(0, len(hidden), chunk)
            ]
        )
        self.center.copy_(pooled.mean(dim=0))
        segments = F.normalize(pooled - self.center, dim=-1).flatten(0, 1)
        width = self.projection.shape[1]
        directions = torch.linalg.svd(segments, full_matrices=False).Vh[:width].T
        if directions.shape[1] < width:  # fewer segments than dimensions: keep the rest random
            directions = torch.cat([directions, self.projection[:, directions.shape[1] :]], 1)
        self.projection.copy_(directions)
        self.num_fitted.fill_(len(hidden))
