"""Routing and fusion over the whole expert repository.

This module is the tensor contract of LiveEdit's inference step. The PyTorch code here is the
reference; `hf_liveedit.kernels` provides a fused Triton implementation with the same contract.

Shapes (``B`` inputs, ``N`` stored experts, ``L`` positions, ``d`` hidden size, ``r`` expert rank,
``k`` feature queries, ``d_m`` module dimension):

* ``phi_in``, ``psi_in``, ``phi_sentinel``: ``[B, k, d_m]`` input-side features.
* ``phi_experts``, ``psi_experts``: ``[N, k, d_m]`` routing features stored with each edit.
* ``routable``: ``[B]`` bool, False for inputs that must never be edited (e.g. text-only).
* ``weights``: ``[B, N]`` float32, ``w_e`` for kept experts and exactly 0 elsewhere.
* ``hidden``: ``[B, L, d]`` output of decoder layer ``l_e``; ``up``/``down`` (``U``/``V``):
  ``[N, r, d]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "similarity",
    "routing_scores",
    "compute_routing",
    "soft_weights",
    "fuse_experts",
    "route_and_fuse",
]


def similarity(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Pairwise LiveEdit similarity ``(1/k) sum_j <a_j, b_j> / sqrt(d_m)``, in float32.

    Args:
        a: ``[B, k, d_m]`` features.
        b: ``[N, k, d_m]`` features. Half-precision storage is cast to float32 ``chunk``
            experts at a time (exact, like the Triton kernel; on CPU the cast costs ~10x the
            float32 product, the price of half the memory).

    Returns:
        ``[B, N]`` float32 similarities.
    """
    k, d_m = a.shape[-2:]
    queries = a.flatten(1).float()
    keys = b.flatten(1)
    if keys.dtype == torch.float32:
        products = queries @ keys.T
    else:
        products = torch.cat(
            [queries @ part.float().T for part in keys.split(chunk)] or [queries[:, :0]], 1
        )
    return products * (1.0 / (k * math.sqrt(d_m)))


def routing_scores(
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    visual_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three quantities routing decides on (differentiable; training uses them too).

    Returns:
        ``(visual [B, N], threshold [B], scores [B, N])``, float32: ``sim(phi_in, phi_e)``, the
        sentinel's ``sim(phi_in, phi_sentinel)`` and the soft score ``s_e = sim(psi_in, psi_e) +
        visual_weight * (visual - threshold)`` (the paper's score when ``visual_weight`` is 0).
    """
    k, d_m = phi_in.shape[-2:]
    threshold = (phi_in.float() * phi_sentinel.float()).flatten(1).sum(-1) / (k * math.sqrt(d_m))
    visual = similarity(phi_in, phi_experts)
    scores = similarity(psi_in, psi_experts)
    if visual_weight:
        scores = scores + visual_weight * (visual - threshold[:, None])
    return visual, threshold, scores


def compute_routing(
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    routable: torch.Tensor,
    visual_weight: float = 0.0,
) -> torch.Tensor:
    """Hard routing against the sentinel, then sigmoid x softmax weights over the kept set.

    Expert ``e`` is kept for input ``b`` iff ``sim(phi_in_b, phi_e) > sim(phi_in_b, phi_sentinel_b)``
    and the input is routable; its weight is ``sigmoid(s_e) * softmax_{kept}(s_e)`` with the soft
    score ``s_e`` of :func:`routing_scores` (the paper's ``sim(psi_in_b, psi_e)`` when
    ``visual_weight`` is 0; see ``LiveEditConfig.soft_routing_visual_weight``).

    Returns:
        ``[B, N]`` float32 weights, zero for experts that are not kept.
    """
    num_inputs, num_experts = phi_in.shape[0], phi_experts.shape[0]
    if num_experts == 0:
        return phi_in.new_zeros((num_inputs, 0), dtype=torch.float32)
    visual, threshold, scores = routing_scores(
        phi_in, psi_in, phi_sentinel, phi_experts, psi_experts, visual_weight
    )
    kept = (visual > threshold[:, None]) & routable[:, None]
    return soft_weights(scores, kept)


def soft_weights(scores: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Soft routing over a given kept set: ``sigmoid(s_e) * softmax_{kept}(s)_e``, 0 elsewhere.

    Differentiable in ``scores``; training uses it to weight the batch experts a sample mixes in.

    Args:
        scores: ``[B, N]`` float32 soft-routing similarities ``s_e = sim(psi_in, psi_e)``.
        kept: ``[B, N]`` bool, the experts each input keeps.

    Returns:
        ``[B, N]`` float32 weights; rows that keep nothing are all 0.
    """
    logits = scores.masked_fill(~kept, float("-inf"))
    # Rows with nothing kept are all -inf: shift by a finite max so they give 0, not NaN.
    row_max = logits.amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).min)
    exp = torch.exp(logits - row_max)
    softmax = exp / exp.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.sigmoid(scores) * softmax * kept


def fuse_experts(
    hidden: torch.Tensor,
    weights: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    norm_eps: float,
) -> torch.Tensor:
    """Apply ``h + sum_e w_e ReLU(LN(h) U_e^T) V_e`` at every position.

    Only the experts that some input keeps are gathered (at most the largest kept-set size per
    input), so the cost follows the kept set, not the repository size. Inputs that keep nothing
    get ``hidden`` back bit for bit.

    Args:
        hidden: ``[B, L, d]`` hidden states (any float dtype).
        weights: ``[B, N]`` routing weights from :func:`compute_routing`.
        up, down: ``[N, r, d]`` expert matrices ``U`` and ``V``.
        norm_weight, norm_bias, norm_eps: the expert LayerNorm's parameters.

    Returns:
        ``[B, L, d]`` fused hidden states in ``hidden``'s dtype.
    """
    active = weights > 0
    num_active = int(active.sum(dim=1).max()) if weights.numel() else 0
    if num_active == 0:
        return hidden
    top_weights, top_index = weights.topk(num_active, dim=1)  # [B, K]
    compute_dtype = norm_weight.dtype
    normed = F.layer_norm(
        hidden.to(compute_dtype), hidden.shape[-1:], norm_weight, norm_bias, norm_eps
    )
    up_sel = up[top_index].to(compute_dtype)  # [B, K, r, d]
    down_sel = down[top_index].to(compute_dtype)
    activations = torch.relu(torch.einsum("bld,bkrd->blkr", normed, up_sel))
    activations = activations * top_weights.to(compute_dtype)[:, None, :, None]
    delta = torch.einsum("blkr,bkrd->bld", activations, down_sel)
    fused = hidden + delta.to(hidden.dtype)
    return torch.where(active.any(dim=1)[:, None, None], fused, hidden)


def route_and_fuse(
    hidden: torch.Tensor,
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    routable: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    norm_eps: float,
    visual_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Route one batch of inputs over the repository and fuse the kept experts.

    Returns:
        ``(fused_hidden [B, L, d], weights [B, N])``; the weights are what decoding steps reuse.
    """
    weights = compute_routing(
        phi_in, psi_in, phi_sentinel, phi_experts, psi_experts, routable, visual_weight
    )
    fused = fuse_experts(hidden, weights, up, down, norm_weight, norm_bias, norm_eps)
    return fused, weights
