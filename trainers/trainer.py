"""``LiveEditTrainer``: a ``transformers.Trainer`` that trains LiveEdit's generator and extractors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_liveedit.config import LiveEditConfig
from hf_liveedit.model import LiveEditModel
from hf_liveedit.persistence import (
    GENERATOR_WEIGHTS_NAME,
    check_base_model_sha256,
    check_fingerprint,
)

from .collator import LiveEditDataCollator
from .model import LOSS_TERMS, LiveEditTrainingModel
from .plot import LOSS_CURVE_NAME, plot_loss_curves

__all__ = ["LiveEditTrainer", "LiveEditTrainingArguments"]

#: Which weight of :class:`LiveEditTrainingArguments` scales each loss term.
TERM_WEIGHTS = {
    "rel": "rel_weight",
    "gen_text": "gen_weight",
    "gen_image": "gen_weight",
    "loc_image": "loc_weight",
    "loc_text": "loc_weight",
    "hr_edit": "hard_routing_weight",
    "hr_loc": "hard_routing_weight",
    "sr1": "soft_routing_weight",
    "sr2": "soft_routing_weight",
}


@dataclass
class LiveEditTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the weights of LiveEdit's loss terms (all 1, as the authors)."""

    rel_weight: float = field(default=1.0, metadata={"help": "Weight of l_rel."})
    gen_weight: float = field(
        default=1.0, metadata={"help": "Weight of l_gen (text and image rephrase)."}
    )
    loc_weight: float = field(default=1.0, metadata={"help": "Weight of l_loc (image and text)."})
    hard_routing_weight: float = field(
        default=1.0, metadata={"help": "Weight of l_hr (generality and locality inputs)."}
    )
    soft_routing_weight: float = field(default=1.0, metadata={"help": "Weight of l_sr1 and l_sr2."})
    cache_hidden_states: bool = field(
        default=False,
        metadata={
            "help": "Keep each training row's layer-l_e output (memory: rows x tokens x d) and run "
            "only the layers above l_e when the row comes again."
        },
    )
    # Batches are nested dicts of the collator, not model-forward columns.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the collator needs every record field."}
    )

    def term_weights(self) -> dict[str, float]:
        """The weight of each loss term."""
        return {term: getattr(self, name) for term, name in TERM_WEIGHTS.items()}


class LiveEditTrainer(Trainer):
    """Trains a :class:`~hf_liveedit.LiveEditModel`'s generator, extractors and sentinel.

    ``compute_loss`` sums the weighted LiveEdit terms (``l_rel``, ``l_gen``, ``l_loc``, ``l_hr``,
    ``l_sr1``, ``l_sr2``; see :class:`~hf_liveedit.trainers.LiveEditTrainingModel`) and every
    term is logged as ``loss_<term>`` (mean since the previous log, averaged over processes).
    Checkpoints are adapter folders (``LiveEditModel.save_pretrained`` format plus the Trainer's
    optimizer / scheduler / RNG state and a ``loss_curve.png``): they load with
    ``LiveEditModel.from_pretrained`` and resume with ``train(resume_from_checkpoint=...)``.

    Args:
        model: the LiveEdit model to train (or an already wrapped
            :class:`~hf_liveedit.trainers.LiveEditTrainingModel`).
        args: training arguments; :class:`LiveEditTrainingArguments` to weight the terms.
        data_collator: defaults to a :class:`~hf_liveedit.trainers.LiveEditDataCollator`.
        **kwargs: passed to ``transformers.Trainer`` (``train_dataset``, ``callbacks``, ...).
    """

    def __init__(
        self,
        model: LiveEditModel | LiveEditTrainingModel,
        args: TrainingArguments | None = None,
        data_collator: Any | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = LiveEditTrainingArguments(output_dir="liveedit-trainer")
        if isinstance(model, LiveEditModel):
            model = LiveEditTrainingModel(model, getattr(args, "cache_hidden_states", False))
        if data_collator is None:
            data_collator = LiveEditDataCollator(model.liveedit)
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)
        self.loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean
        self.model_accepts_loss_kwargs = False
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_count = 0

    @property
    def liveedit(self) -> LiveEditModel:
        """The model being trained."""
        return self.accelerator.unwrap_model(self.model).liveedit

    # --- loss and logging --------------------------------------------------------------------------
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of every LiveEdit loss term of the batch.

        Returns:
            The total loss, and with ``return_outputs`` the unweighted terms.
        """
        terms = model(**inputs)
        weights = (
            self.args.term_weights()
            if isinstance(self.args, LiveEditTrainingArguments)
            else dict.fromkeys(TERM_WEIGHTS, 1.0)
        )
        loss = sum(weights[term] * value for term, value in terms.items())
        if model.training:
            self._term_count += 1
            for term, value in terms.items():
                previous = self._term_sums.get(term, 0.0)
                self._term_sums[term] = previous + value.detach().float()
        return (loss, terms) if return_outputs else loss

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        """Evaluation computes the same total loss (there are no logits to return)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add each term's running mean to the training logs."""
        if "loss" in logs and self._term_count:
            terms = [term for term in LOSS_TERMS if term in self._term_sums]
            means = torch.stack([self._term_sums[term] for term in terms]) / self._term_count
            means = self.accelerator.reduce(means, reduction="mean")
            for term, value in zip(terms, means.tolist()):
                logs[f"loss_{term}"] = round(value, 5)
            self._term_sums, self._term_count = {}, 0
        super().log(logs, start_time)

    # --- saving and loading ------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the adapter folder (``LiveEditModel.save_pretrained``) and the loss curve."""
        if not self.args.should_save:
            return
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        self.liveedit.save_pretrained(output_dir)
        plot_loss_curves(self.state.log_history, output_dir / LOSS_CURVE_NAME)

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        self.load_generator(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self.load_generator(self.state.best_model_checkpoint)

    def load_generator(self, folder: str | Path, allow_base_model_mismatch: bool = False) -> None:
        """Load the LiveEdit modules' weights from an adapter folder or checkpoint.

        Args:
            folder: The adapter folder or checkpoint.
            allow_base_model_mismatch: Warn instead of raising when the folder was saved on a
                base model with other weights (e.g. to start training for a new backbone from a
                generator trained on another one).

        Raises:
            ValueError: the folder was saved for another base model or edit layer.
        """
        folder = Path(folder)
        _, extra = LiveEditConfig.from_pretrained(folder)
        liveedit = self.liveedit
        what = f"The checkpoint in {folder}"
        check_fingerprint(liveedit.fingerprint(), extra["base_model_fingerprint"], what)
        if extra.get("base_model_sha256") is not None:
            check_base_model_sha256(
                extra["base_model_sha256"],
                liveedit.base_model_sha256(),
                what,
                allow_base_model_mismatch,
            )
        state = load_file(str(folder / GENERATOR_WEIGHTS_NAME))
        liveedit.liveedit_modules.load_state_dict(state)
