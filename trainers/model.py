"""One training forward of LiveEdit: every loss term, computed from one batch of the collator.

The whole step runs inside :meth:`LiveEditTrainingModel.forward`, so ``accelerate`` / DDP wrap
it like any model (gradients of the LiveEdit modules are synchronised as usual).

Speed without changing the maths:

* the VLLM is frozen and its inputs need no gradient, so nothing below layer ``l_e`` is
  recorded for backward;
* all rows with an image go through the model in one forward: at layer ``l_e`` a hook takes
  the frozen hidden states, makes the batch's experts from the edit rows and the routing
  features of every row from those same hidden states, and fuses the mixture into every row
  (so the frozen bottom runs once per row; only the frozen-model reference for locality rows
  needs a second, gradient-free pass);
* with ``cache_hidden_states``, each row's layer-``l_e`` output is kept; rows found in the cache
  skip the layers up to ``l_e``, the others run them alone, and the whole batch continues
  above ``l_e`` from there (see :mod:`hf_liveedit.trainers.cache`);
* logits are computed only at the answer positions (``logits_to_keep``; answers sit at the
  right end of left-padded rows);
* text-only rows are never edited unless ``edit_text_only_inputs`` is set, so their ``l_loc`` is
  exactly 0 and they are not run.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hf_liveedit.backbones.base import IGNORE_INDEX
from hf_liveedit.layer import layer_output_hidden, replace_layer_output_hidden
from hf_liveedit.model import LiveEditModel
from hf_liveedit.modules import InputFeatures, Spans
from hf_liveedit.routing import fuse_experts, routing_scores, similarity, soft_weights

from .cache import HiddenStateCache, run_above_edit_layer
from .collator import RowKind
from .losses import answer_kl, answer_nll, hard_routing_scores, info_nce, soft_routing_absolute

__all__ = ["LOSS_TERMS", "LiveEditTrainingModel", "edit_layer_override"]

#: Loss terms returned by :meth:`LiveEditTrainingModel.forward`, in logging order.
LOSS_TERMS = (
    "rel",
    "gen_text",
    "gen_image",
    "loc_image",
    "loc_text",
    "hr_edit",
    "hr_loc",
    "sr1",
    "sr2",
)

EditFunction = Callable[[torch.Tensor, Spans], torch.Tensor]


@contextlib.contextmanager
def edit_layer_override(
    liveedit: LiveEditModel, edit: EditFunction, spans: Spans
) -> Iterator[None]:
    """Within this context, layer ``l_e``'s output ``h`` is replaced by ``edit(h, spans)``.

    The adapter's own routing hook is disabled meanwhile, so only ``edit`` changes the model.

    Args:
        liveedit: the model whose edit layer is overridden.
        edit: maps the layer's hidden states ``[B, L, d]`` (and the batch's spans) to new ones.
        spans: image / prompt / answer positions of the batch that will be run.
    """
    layer = liveedit.backbone.decoder_layers()[liveedit.liveedit_config.edit_layer]

    def hook(module: nn.Module, args: tuple, output: object) -> object:
        hidden = layer_output_hidden(output)
        if spans.image.shape != hidden.shape[:2]:
            raise RuntimeError(
                f"Layer l_e saw hidden states of shape {tuple(hidden.shape[:2])}, but the batch's "
                f"spans are {tuple(spans.image.shape)}: the model must be called with input_ids."
            )
        return replace_layer_output_hidden(output, edit(hidden, spans))

    with liveedit.disable_adapter():
        handle = layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


@dataclass
class _AnswerLogits:
    """Logits that predict the answer positions of right-aligned answers, ``[R, A, V]``."""

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: torch.Tensor, width: int) -> _AnswerLogits:
        """The given rows, restricted to the last ``width`` answer positions."""
        return _AnswerLogits(
            self.logits[index, -width:], self.targets[index, -width:], self.mask[index, -width:]
        )


@dataclass
class _ExpertBank:
    """The batch's experts (one per record, made from its edit row) and their ``phi_e``, ``psi_e``."""

    up: torch.Tensor
    down: torch.Tensor
    phi: torch.Tensor
    psi: torch.Tensor


class LiveEditTrainingModel(nn.Module):
    """Wraps a :class:`~hf_liveedit.LiveEditModel` so that ``forward(**batch)`` returns its losses.

    Only the LiveEdit modules train; the VLLM stays frozen and in eval mode (its dropout and
    normalisation statistics never change, whatever ``train()`` is called with).

    Args:
        liveedit: the model to train.
        cache_hidden_states: keep every row's layer-``l_e`` output (in memory, on the model's
            device) to skip the frozen bottom when the row comes again (later epochs).
    """

    def __init__(self, liveedit: LiveEditModel, cache_hidden_states: bool = False):
        super().__init__()
        self.liveedit = liveedit
        self.cache = HiddenStateCache() if cache_hidden_states else None
        liveedit.base_model.requires_grad_(False)
        parameters = inspect.signature(liveedit.base_model.forward).parameters
        self._keeps_logits = "logits_to_keep" in parameters

    def train(self, mode: bool = True) -> LiveEditTrainingModel:
        super().train(mode)
        self.liveedit.base_model.eval()
        return self

    def forward(
        self,
        edited: dict[str, torch.Tensor],
        row_kind: torch.Tensor,
        row_record: torch.Tensor,
        expert_mask: torch.Tensor,
        pair_input: torch.Tensor,
        pair_edit: torch.Tensor,
        frozen: dict[str, torch.Tensor] | None = None,
        text: dict[str, torch.Tensor] | None = None,
        text_expert_mask: torch.Tensor | None = None,
        negative_record: torch.Tensor | None = None,
        row_keys: Sequence[str | None] | None = None,
        frozen_keys: Sequence[str | None] | None = None,
        text_keys: Sequence[str | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every loss term of one batch (see :class:`~hf_liveedit.trainers.LiveEditDataCollator`).

        Returns:
            ``{term: scalar}`` for each of :data:`LOSS_TERMS`, unweighted; a term without rows in
            this batch is a constant 0.
        """
        modules = self.liveedit.liveedit_modules
        edit_rows = (row_kind == RowKind.EDIT).nonzero().squeeze(1)
        edit_rows = edit_rows[row_record[edit_rows].argsort()]  # expert b is record b's
        made = {}

        def edit_image_rows(hidden: torch.Tensor, spans: Spans) -> torch.Tensor:
            experts = modules.make_experts(hidden, spans)  # edit-side features of every row
            features = modules.input_features(hidden, spans)
            bank = _ExpertBank(
                experts.up[edit_rows],
                experts.down[edit_rows],
                experts.phi[edit_rows],
                experts.psi[edit_rows],
            )
            made.update(experts=experts, features=features, bank=bank)
            return self._fuse(hidden, features, bank, expert_mask)

        answers = self._answer_logits(edited, edit_image_rows, row_keys)
        experts, features, bank = made["experts"], made["features"], made["bank"]
        zero = answers.logits.new_zeros((), dtype=torch.float32)
        terms = dict.fromkeys(LOSS_TERMS, zero)

        nll = answer_nll(answers.logits, answers.targets, answers.mask)
        for term, kind in (
            ("rel", RowKind.EDIT),
            ("gen_text", RowKind.GEN_TEXT),
            ("gen_image", RowKind.GEN_IMAGE),
        ):
            if (row_kind == kind).any():
                terms[term] = nll[row_kind == kind].mean()

        loc_rows = (row_kind == RowKind.LOC_IMAGE).nonzero().squeeze(1)
        if frozen is not None and len(loc_rows):
            terms["loc_image"] = self._locality_kl(answers, loc_rows, frozen, frozen_keys)
        if text is not None and modules.edit_text_only_inputs:

            def edit_text_rows(hidden: torch.Tensor, spans: Spans) -> torch.Tensor:
                return self._fuse(
                    hidden, modules.input_features(hidden, spans), bank, text_expert_mask
                )

            text_answers = self._answer_logits(text, edit_text_rows, text_keys)
            every_row = torch.arange(text_answers.logits.shape[0], device=row_kind.device)
            terms["loc_text"] = self._locality_kl(text_answers, every_row, text, text_keys)

        # Routing losses: per record, an input end and an edit end from the generality domain.
        own = torch.arange(len(pair_input), device=row_kind.device)
        phi_in, psi_in = features.phi[pair_input], features.psi[pair_input]
        phi_edit, psi_edit = experts.phi[pair_edit], experts.psi[pair_edit]
        scores = hard_routing_scores(phi_in, phi_edit, features.phi_sentinel[pair_input])
        terms["hr_edit"] = info_nce(scores, own).mean()
        if len(loc_rows):
            scores = hard_routing_scores(
                features.phi[loc_rows], phi_edit, features.phi_sentinel[loc_rows]
            )
            sentinel = torch.full_like(loc_rows, len(pair_edit))
            terms["hr_loc"] = info_nce(scores, sentinel).mean()
        positive = similarity(psi_in, psi_edit).diagonal()
        negative = None
        if negative_record is not None:
            negative = similarity(psi_in, psi_edit[negative_record]).diagonal()
        terms["sr1"] = soft_routing_absolute(positive, negative).mean()
        candidates = torch.cat([psi_edit, experts.psi[loc_rows]])
        terms["sr2"] = info_nce(similarity(psi_in, candidates), own).mean()
        return terms

    # --- helpers ---------------------------------------------------------------------------------
    def _fuse(
        self,
        hidden: torch.Tensor,
        features: InputFeatures,
        bank: _ExpertBank,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Mix each row's chosen batch experts, weighted as soft routing weights them."""
        modules = self.liveedit.liveedit_modules
        _, _, scores = routing_scores(
            features.phi,
            features.psi,
            features.phi_sentinel,
            bank.phi,
            bank.psi,
            modules.soft_routing_visual_weight,
        )
        weights = soft_weights(scores, mask & features.routable[:, None])
        norm = modules.expert_norm
        return fuse_experts(hidden, weights, bank.up, bank.down, norm.weight, norm.bias, norm.eps)

    def _answer_logits(
        self,
        inputs: dict[str, torch.Tensor],
        edit: EditFunction | None,
        keys: Sequence[str | None] | None = None,
    ) -> _AnswerLogits:
        """Run the VLLM (edited by ``edit`` at layer ``l_e``, or frozen when None)."""
        labels = inputs["labels"]
        width = int((labels != IGNORE_INDEX).sum(dim=1).max())
        model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
        model_inputs["use_cache"] = False
        if self._keeps_logits:
            model_inputs["logits_to_keep"] = width + 1
        spans = self.liveedit.backbone.spans(
            inputs["input_ids"], inputs.get("attention_mask"), labels
        )
        cache = self.cache if keys is not None else None
        cached = None
        if cache is not None and cache.fast_path is not False:
            cached = cache.complete(self.liveedit, model_inputs, keys)
        if cached is not None and cache.fast_path:
            logits = self._above_edit_layer(model_inputs, cached, edit, spans)
        else:
            checked = (
                None
                if cached is None
                else self._check_above_edit_layer(model_inputs, cached, edit, spans)
            )
            logits = self._full_forward(model_inputs, edit, spans, keys, inputs["attention_mask"])
            if cached is not None:
                cache.fast_path = checked is not None and torch.allclose(
                    checked, logits.detach(), rtol=1e-3, atol=1e-3
                )
                if not cache.fast_path:
                    warnings.warn(
                        "Cached layer-l_e states do not reproduce the full forward for this model; "
                        "training continues without the cache.",
                        stacklevel=2,
                    )
        targets = labels[:, -width:]
        return _AnswerLogits(logits[:, -width - 1 : -1], targets, targets != IGNORE_INDEX)

    def _full_forward(
        self,
        model_inputs: dict[str, torch.Tensor],
        edit: EditFunction | None,
        spans: Spans,
        keys: Sequence[str | None] | None,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """The whole model; layer ``l_e``'s output is cached (if enabled) and edited."""
        liveedit, cache = self.liveedit, self.cache if keys is not None else None
        if edit is None and cache is None:
            with torch.no_grad(), liveedit.disable_adapter():
                return liveedit.base_model(**model_inputs).logits

        def at_edit_layer(hidden: torch.Tensor, spans: Spans) -> torch.Tensor:
            if cache is not None:
                cache.store(keys, hidden, attention_mask)
            return hidden if edit is None else edit(hidden, spans)

        grad = contextlib.nullcontext() if edit is not None else torch.no_grad()
        with grad, edit_layer_override(liveedit, at_edit_layer, spans):
            return liveedit.base_model(**model_inputs).logits

    def _above_edit_layer(
        self,
        model_inputs: dict[str, torch.Tensor],
        hidden: torch.Tensor,
        edit: EditFunction | None,
        spans: Spans,
    ) -> torch.Tensor:
        """Only the layers above ``l_e``, from cached hidden states."""
        if edit is None:
            with torch.no_grad():
                return run_above_edit_layer(self.liveedit, model_inputs, hidden)
        return run_above_edit_layer(self.liveedit, model_inputs, edit(hidden, spans))

    def _check_above_edit_layer(
        self,
        model_inputs: dict[str, torch.Tensor],
        hidden: torch.Tensor,
        edit: EditFunction | None,
        spans: Spans,
    ) -> torch.Tensor | None:
        """The cached path's logits without gradients (None if this model's forward rejects it)."""
        try:
            with torch.no_grad():
                return self._above_edit_layer(model_inputs, hidden, edit, spans)
        except Exception as error:  # e.g. a family whose forward requires pixel values
            warnings.warn(f"Layers above l_e cannot run alone ({error!r})", stacklevel=2)
            return None

    def _locality_kl(
        self,
        edited: _AnswerLogits,
        rows: torch.Tensor,
        reference_inputs: dict[str, torch.Tensor],
        reference_keys: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """``l_loc``: KL from the frozen model to the edited one on locality answers."""
        reference = self._answer_logits(reference_inputs, None, reference_keys)
        edited = edited.rows(rows, reference.logits.shape[1])
        if not torch.equal(edited.mask, reference.mask):
            raise RuntimeError("locality rows differ between the edited and the frozen batch")
        return answer_kl(reference.logits, edited.logits, reference.mask).mean()
