"""LiveEdit's training losses as pure tensor functions (see ``docs/liveedit-method.md``).

Every function returns one value per sample (no reduction), so callers average over whichever
samples a term covers. Similarities are LiveEdit's ``sim`` (:func:`hf_liveedit.routing.similarity`),
contrastive terms use temperature 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_liveedit.routing import similarity

__all__ = [
    "answer_kl",
    "answer_nll",
    "hard_routing_scores",
    "info_nce",
    "soft_routing_absolute",
]


def _masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [R, A]`` over ``mask`` per row; 0 for rows without masked positions."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def answer_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of each sample's answer tokens (``l_rel``, ``l_gen``).

    Args:
        logits: ``[R, A, V]`` logits that predict the answer positions.
        targets: ``[R, A]`` answer token ids (any value where ``mask`` is False).
        mask: ``[R, A]`` bool, True at answer tokens.

    Returns:
        ``[R]`` float32: ``-(1/|o|) sum_t log p(o_t | ...)`` per sample.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    safe_targets = targets.masked_fill(~mask, 0)
    token_nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    return _masked_row_mean(token_nll, mask)


def answer_kl(
    reference_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean ``KL(p_reference || p)`` over each sample's answer tokens (``l_loc``).

    Args:
        reference_logits: ``[R, A, V]`` logits of the frozen model.
        logits: ``[R, A, V]`` logits of the edited model at the same positions.
        mask: ``[R, A]`` bool, True at answer tokens.

    Returns:
        ``[R]`` float32 per-sample mean KL divergence.
    """
    reference = torch.log_softmax(reference_logits.float(), dim=-1)
    edited = torch.log_softmax(logits.float(), dim=-1)
    token_kl = (reference.exp() * (reference - edited)).sum(dim=-1)
    return _masked_row_mean(token_kl, mask)


def info_nce(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """``f_nce = -log(exp(s_pos) / sum_j exp(s_j))`` per row (temperature 1).

    Args:
        scores: ``[N, C]`` scores of each anchor against its candidates.
        positive: ``[N]`` index of each row's positive candidate.

    Returns:
        ``[N]`` float32 losses.
    """
    return F.cross_entropy(scores.float(), positive, reduction="none")


def hard_routing_scores(
    phi_in: torch.Tensor, phi_experts: torch.Tensor, phi_sentinel: torch.Tensor
) -> torch.Tensor:
    """Candidates of the hard-routing loss ``l_hr``: every batch expert, then the sentinel.

    Args:
        phi_in: ``[N, k, d_m]`` input-side visual features.
        phi_experts: ``[M, k, d_m]`` edit-side visual features of the batch's experts.
        phi_sentinel: ``[N, k, d_m]`` each input's sentinel feature ``phi_Theta``.

    Returns:
        ``[N, M + 1]``: ``sim(phi_in, phi_e)`` for each expert, and ``sim(phi_in, phi_Theta)`` in
        the last column. Positive: the own expert for a generality input, column ``M`` (the
        sentinel) for a locality input.
    """
    own_sentinel = similarity(phi_in, phi_sentinel).diagonal()
    return torch.cat([similarity(phi_in, phi_experts), own_sentinel[:, None]], dim=1)


def soft_routing_absolute(
    positive: torch.Tensor, negative: torch.Tensor | None = None
) -> torch.Tensor:
    """``l_sr1 = -log sigmoid(s_pos) - log(1 - sigmoid(s_neg))`` per row.

    Args:
        positive: ``[N]`` ``sim(psi_in, psi_e(own))``.
        negative: ``[N]`` ``sim(psi_in, psi_e(other))``, or None when the batch has no other
            sample (then only the positive term remains).

    Returns:
        ``[N]`` float32 losses.
    """
    loss = -F.logsigmoid(positive.float())
    if negative is not None:
        loss = loss - F.logsigmoid(-negative.float())  # log(1 - sigmoid(x)) = logsigmoid(-x)
    return loss
