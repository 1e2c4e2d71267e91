"""Verified edits (beyond the paper): check that a new edit took, and refine its expert if not.

A generated expert does not always make the model answer with its target. With
``LiveEditConfig.verify_edits`` on, :meth:`~hf_liveedit.LiveEditModel.add_edits` checks each new
edit's greedy answer on its own edit input, with every stored expert and the new ones routed as
at inference, and refines the experts of the edits that did not take: Adam steps on only their
``U`` and ``V`` against the target's negative log-likelihood, with the base model, the generator
and every routing feature frozen. Refinement stops for each edit as soon as its greedy answer is
the target, or after ``refine_steps``.

A refined expert only helps if the router keeps it for its own input. When the hard filter drops
it there, no gradient reaches ``U`` and ``V``; with ``LiveEditConfig.refine_routing_margin`` the
edit's stored visual key is first moved the least distance that lets its own input pass (see
:func:`reroute_own_inputs`), as GRACE-style key-value editors store the edit input's key.

The greedy answer is read teacher-forced: the argmax at each target position, given the target's
earlier tokens. It equals the target exactly when greedy decoding of as many tokens spells the
target, which is how the evaluation's exact match reads answers. With
``LiveEditConfig.refine_min_probability`` an edit is refined until its target is also likely:
every answer token at least that probability (a margin, so that the edit holds beyond its own
phrasing); whether it *took* is still the greedy answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F
from transformers import BatchFeature

from .backbones.base import IGNORE_INDEX
from .modules import ExpertBatch

if TYPE_CHECKING:
    from .model import LiveEditModel


@dataclass(frozen=True)
class EditCheck:
    """Outcome of verifying one edit.

    Attributes:
        took: the greedy answer on the edit input is the target.
        steps: refinement steps applied to the edit's expert (0: the generated expert took).
        rerouted: the edit's visual key was moved so that its own input passes the hard filter.
    """

    took: bool
    steps: int
    rerouted: bool = False


def answer_logits(
    liveedit: LiveEditModel, inputs: BatchFeature, experts: ExpertBatch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict each answer token of teacher-forced ``inputs``, and those tokens.

    Only the last positions are projected to the vocabulary (answers sit at the end of
    left-padded rows); the labels mark the answer tokens for routing, so they never route.

    Args:
        liveedit: the model.
        inputs: from :meth:`~hf_liveedit.LiveEditModel.build_inputs` with targets.
        experts: experts to route over instead of the repository's.

    Returns:
        ``([B, A, V] logits, [B, A] answer ids)``, ``-100`` where a row's answer is shorter.
    """
    labels = inputs["labels"]
    keep = int((labels != IGNORE_INDEX).sum(dim=1).max()) + 1
    kwargs = {key: value for key, value in inputs.items() if key != "labels"}
    spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"], labels)
    with liveedit.hook.call(spans, experts=experts, fixed_spans=True):
        logits = liveedit.base_model(**kwargs, use_cache=False, logits_to_keep=keep).logits
    return logits[:, :-1], labels[:, -keep + 1 :]


def reroute_own_inputs(
    liveedit: LiveEditModel, inputs: BatchFeature, phi: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each new visual key the least distance that lets its own edit input pass the filter.

    The hard filter keeps expert ``e`` for an input when ``sim(phi_in, phi_e) > sim(phi_in,
    phi_sentinel)``; this is linear in ``phi_e``, so where the edit's own input misses by ``gap``
    the smallest change is along ``phi_in``: ``phi_e += gap' * k sqrt(d_m) phi_in / |phi_in|^2``
    with ``gap' = margin - (sim(phi_in, phi_e) - sim(phi_in, phi_sentinel))``. Keys that already
    pass with ``margin`` are not touched. Inputs of other entities move by their alignment with
    ``phi_in``, which is why this is an option with its own margin.

    Args:
        liveedit: the model.
        inputs: the new edits' teacher-forced inputs (answer tokens never route).
        phi: ``[B, k, d_m]`` their generated visual keys.
        margin: the margin the own input must pass by.

    Returns:
        The keys (moved where needed) and ``[B]`` bool: which were moved.
    """
    spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    hidden = liveedit.hidden_states_at_edit_layer(inputs)  # causal: answers do not change it
    with torch.no_grad():
        features = liveedit.liveedit_modules.input_features(hidden, spans)
        phi_in = features.phi.float()
        k, d_m = phi_in.shape[-2:]
        scale = k * math.sqrt(d_m)
        own = (phi_in * phi.float()).flatten(1).sum(-1) / scale
        threshold = (phi_in * features.phi_sentinel.float()).flatten(1).sum(-1) / scale
        gap = margin - (own - threshold)
        moved = (gap > 0) & features.routable
        step = gap * scale / phi_in.flatten(1).pow(2).sum(-1).clamp_min(1e-12)
        shifted = phi.float() + torch.where(moved, step, 0.0)[:, None, None] * phi_in
    return shifted.to(phi.dtype), moved.cpu()


def refine_new_experts(
    liveedit: LiveEditModel,
    inputs: BatchFeature,
    new: ExpertBatch,
    stored: ExpertBatch,
    max_steps: int,
    lr: float,
    routing_margin: float | None = None,
    min_probability: float = 0.0,
) -> tuple[ExpertBatch, list[EditCheck]]:
    """Check new edits on their own inputs and refine the experts of those that did not take.

    Args:
        liveedit: the model (its repository is not changed).
        inputs: the new edits' teacher-forced inputs (image, prompt and target), one row each.
        new: their generated experts, in the same order.
        stored: every other expert to route over (stored edits, and new edits of earlier batches).
        max_steps: most refinement steps per edit.
        lr: Adam learning rate.
        routing_margin: first move the visual keys whose own input the hard filter drops (see
            :func:`reroute_own_inputs`); None leaves every key as generated.
        min_probability: refine each edit until every answer token also has at least this
            probability (0: until the greedy answer is the target).

    Returns:
        The new experts (refined ``U``, ``V``; same routing features) and one check per edit.
    """
    dtype = new.up.dtype
    moved = torch.zeros(new.phi.shape[0], dtype=torch.bool)
    if routing_margin is not None:
        phi, moved = reroute_own_inputs(liveedit, inputs, new.phi, routing_margin)
        new = ExpertBatch(new.up, new.down, phi, new.psi)
    up = new.up.detach().float().clone().requires_grad_(True)
    down = new.down.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([up, down], lr=lr)
    steps = torch.zeros(up.shape[0], dtype=torch.long)
    phi = torch.cat([stored.phi, new.phi.to(stored.phi)])
    psi = torch.cat([stored.psi, new.psi.to(stored.psi)])
    for step in range(max_steps + 1):
        experts = ExpertBatch(
            torch.cat([stored.up.to(up), up]), torch.cat([stored.down.to(down), down]), phi, psi
        )
        with torch.enable_grad():
            logits, answers = answer_logits(liveedit, inputs, experts)
            answered = answers != IGNORE_INDEX
            took = ((logits.argmax(dim=-1) == answers) | ~answered).all(dim=1)
            nll = F.cross_entropy(
                logits.float().transpose(1, 2), answers, ignore_index=IGNORE_INDEX, reduction="none"
            )
            # token probability >= p  <=>  token NLL <= -log p (unanswered positions have NLL 0)
            likely = (nll <= -math.log(min_probability)).all(dim=1) if min_probability else took
            done = took & likely
            if done.all() or step == max_steps:
                break
            per_edit = nll.sum(dim=1) / answered.sum(dim=1)
            loss = per_edit[~done].sum()
            if not loss.requires_grad:  # the router keeps none of these experts: nothing to refine
                break
            optimizer.zero_grad()
            loss.backward()
        done = done.to(up.device)
        kept = up.detach()[done].clone(), down.detach()[done].clone()
        optimizer.step()
        with torch.no_grad():  # a finished edit keeps its expert (Adam's momentum would not)
            up[done], down[done] = kept
        steps += (~done).long().cpu()
    refined = ExpertBatch(up.detach().to(dtype), down.detach().to(dtype), new.phi, new.psi)
    outcome = zip(took.tolist(), steps.tolist(), moved.tolist())
    return refined, [EditCheck(bool(ok), int(n), bool(m)) for ok, n, m in outcome]
