"""Each LiveEdit loss term against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
from hf_liveedit.trainers.losses import (
    answer_kl,
    answer_nll,
    hard_routing_scores,
    info_nce,
    soft_routing_absolute,
)

from hf_liveedit.routing import soft_weights

LN2, LN3 = math.log(2.0), math.log(3.0)


def probabilities_to_logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def test_answer_nll_is_the_mean_over_each_samples_answer_tokens():
    # sample 0: p(target) = 1/3 then 1/2; sample 1: one answer token with p = 1/4, one padding.
    logits = torch.stack(
        [
            probabilities_to_logits([1 / 3, 1 / 3, 1 / 3], [0.25, 0.5, 0.25]),
            probabilities_to_logits([0.9, 0.05, 0.05], [0.25, 0.5, 0.25]),
        ]
    )
    targets = torch.tensor([[2, 1], [-100, 0]])
    mask = targets != -100
    expected = torch.tensor([(LN3 + LN2) / 2, 2 * LN2])
    torch.testing.assert_close(answer_nll(logits, targets, mask), expected)


def test_answer_nll_of_a_sample_without_answer_tokens_is_zero():
    logits = torch.zeros(1, 2, 3)
    assert (
        answer_nll(logits, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.bool))
        == 0
    )


def test_answer_kl_goes_from_the_frozen_to_the_edited_distribution():
    reference = probabilities_to_logits([0.5, 0.5], [0.5, 0.5])[None]
    edited = probabilities_to_logits([0.25, 0.75], [0.5, 0.5])[None]
    mask = torch.tensor([[True, True]])
    # KL(p || q) at position 0, 0 at position 1; averaged over the two answer tokens.
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    torch.testing.assert_close(answer_kl(reference, edited, mask), torch.tensor([kl / 2]))
    # Not symmetric: the reference distribution weights the log-ratio.
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    torch.testing.assert_close(answer_kl(edited, reference, mask), torch.tensor([reverse / 2]))


def test_info_nce_with_temperature_one():
    scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, LN2, LN3]])
    positive = torch.tensor([0, 2])
    expected = torch.tensor([math.log(1 + 2 / math.e), math.log(6 / 3)])
    torch.testing.assert_close(info_nce(scores, positive), expected)


def test_hard_routing_scores_put_each_inputs_own_sentinel_last():
    # k = 2 queries of d_m = 4: sim(a, b) = (1/2) * sum_j <a_j, b_j> / sqrt(4).
    phi_in = torch.tensor([[[2.0, 0, 0, 0], [0, 2.0, 0, 0]], [[0, 0, 4.0, 0], [0, 0, 0, 0]]])
    phi_experts = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0]], [[0, 0, 1.0, 0], [1.0, 0, 0, 0]]])
    phi_sentinel = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0, -1.0, 0], [0, 0, 0, 0]]])
    expected = torch.tensor(
        [
            [(2 + 2) / 4, 0.0, 2 / 4],  # input 0: expert 0, expert 1, its own sentinel
            [0.0, 4 / 4, -4 / 4],  # input 1
        ]
    )
    torch.testing.assert_close(hard_routing_scores(phi_in, phi_experts, phi_sentinel), expected)


def test_soft_routing_absolute_pulls_the_own_expert_up_and_the_other_down():
    positive = torch.tensor([0.0, LN3])
    negative = torch.tensor([0.0, LN3])
    # -log sigmoid(0) - log(1 - sigmoid(0)) = 2 ln 2; sigmoid(ln 3) = 3/4.
    expected = torch.tensor([2 * LN2, -math.log(3 / 4) - math.log(1 / 4)])
    torch.testing.assert_close(soft_routing_absolute(positive, negative), expected)
    torch.testing.assert_close(
        soft_routing_absolute(positive), expected.new_tensor([LN2, -math.log(0.75)])
    )


@pytest.mark.parametrize(
    "kept, expected",
    [
        ([[True, True]], [[0.5 * 1 / 3, (2 / 3) * (2 / 3)]]),  # sigmoid(s) * softmax over both
        ([[True, False]], [[0.5, 0.0]]),  # a lone expert gets sigmoid(s)
        ([[False, False]], [[0.0, 0.0]]),
    ],
)
def test_mixture_weights_follow_soft_routing(kept, expected):
    scores = torch.tensor([[0.0, LN2]], requires_grad=True)
    weights = soft_weights(scores, torch.tensor(kept))
    torch.testing.assert_close(weights, torch.tensor(expected))
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all()
