"""``LiveEditTrainer``: a ``transformers.Trainer`` that trains LiveEdit's generator and extractors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.modelcard import extract_hyperparameters_from_trainer
from transformers.trainer import TRAINING_ARGS_NAME

from hf_liveedit.config import CONFIG_NAME, LiveEditConfig, config_file, hub_model_id
from hf_liveedit.data.targets import CounterfactualTargets
from hf_liveedit.model import LiveEditModel
from hf_liveedit.persistence import (
    EDITS_NAME,
    EXPERTS_WEIGHTS_NAME,
    GENERATOR_WEIGHTS_NAME,
    check_base_model,
    read_generator,
    require_keys,
)

from .callbacks import TimeBudgetCallback
from .collator import LiveEditDataCollator
from .model import LOSS_TERMS, LiveEditTrainingModel
from .plot import LOSS_CURVE_NAME, plot_loss_curves

__all__ = ["LiveEditTrainer", "LiveEditTrainingArguments"]

#: Files of a saved adapter that the Trainer's Hub pushes must carry.
_ADAPTER_FILES = (
    CONFIG_NAME,
    GENERATOR_WEIGHTS_NAME,
    EXPERTS_WEIGHTS_NAME,
    EDITS_NAME,
    "README.md",
    LOSS_CURVE_NAME,
)
_TRAINING_SECTION = "## Training procedure"

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


#: ``trained_modules`` -> prefixes of the LiveEdit parameters it trains (None: all of them).
TRAINED_MODULES = {"all": None, "generator": ("generator.", "expert_norm.")}


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
            "only the layers above l_e when the row comes again (rows of a batch not cached yet "
            "run the layers up to l_e alone)."
        },
    )
    fresh_target_rate: float = field(
        default=0.0,
        metadata={
            "help": "Share of training batches whose edit targets are redrawn: each record gets "
            "another value of its relation (never its true answer) from the training data, so "
            "that the generator learns to write any target, not only the records' own. Needs "
            "relation and answer columns (the packaged benchmark). Drawn per batch: the other "
            "batches keep using the hidden-state cache; evaluation always uses the records' "
            "own targets."
        },
    )
    novel_target_rate: float = field(
        default=0.0,
        metadata={
            "help": "Share of the redrawn targets (fresh_target_rate) that are invented: the "
            "start of one value of the relation joined to the end of another, a string no record "
            "has, so that the generator learns to write targets it never saw, not only the "
            "relation's values in the training data."
        },
    )
    trained_modules: str = field(
        default="all",
        metadata={
            "help": "'all' (the paper: generator, feature extractors, sentinel and expert "
            "LayerNorm) or 'generator' (the expert generator and the expert LayerNorm only: "
            "continue training a generator whose router was trained apart, e.g. by "
            "train-router, without changing how it routes).",
            "choices": tuple(TRAINED_MODULES),
        },
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Stop after this many minutes of training, at a step boundary, with a "
            "checkpoint (resume it with --resume last); None: no time limit."
        },
    )
    # Batches are nested dicts of the collator, not model-forward columns.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the collator needs every record field."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in TERM_WEIGHTS.values():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"max_train_minutes must be > 0, got {self.max_train_minutes!r}")
        if self.trained_modules not in TRAINED_MODULES:
            raise ValueError(
                f"trained_modules must be one of {list(TRAINED_MODULES)}, got "
                f"{self.trained_modules!r}"
            )
        for name in ("fresh_target_rate", "novel_target_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.novel_target_rate > 0 and self.fresh_target_rate == 0:
            raise ValueError("novel_target_rate invents redrawn targets: set fresh_target_rate > 0")

    def term_weights(self) -> dict[str, float]:
        """The weight of each loss term."""
        return {term: getattr(self, name) for term, name in TERM_WEIGHTS.items()}


class LiveEditTrainer(Trainer):
    """Trains a :class:`~hf_liveedit.LiveEditModel`'s generator, extractors and sentinel.

    ``compute_loss`` sums the weighted LiveEdit terms (``l_rel``, ``l_gen``, ``l_loc``, ``l_hr``,
    ``l_sr1``, ``l_sr2``; see :class:`~hf_liveedit.trainers.LiveEditTrainingModel`) and every
    term is logged as ``loss_<term>`` (mean since the previous log, averaged over processes).
    Checkpoints and :meth:`save_model` folders are adapter folders
    (``LiveEditModel.save_pretrained`` format plus ``training_args.bin``, a ``loss_curve.png``
    and, in checkpoints, the Trainer's optimizer / scheduler / RNG state): they load with
    ``LiveEditModel.from_pretrained`` and resume with ``train(resume_from_checkpoint=...)``.
    ``push_to_hub`` (the method, or the ``push_to_hub=True`` argument) uploads that folder with
    the LiveEdit model card, completed with the training's hyperparameters. ``evaluate`` seeds
    the collator's random choices with ``args.seed``: the same model always gets the same
    ``eval_loss``.

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
        prefixes = TRAINED_MODULES[getattr(args, "trained_modules", "all")]
        if prefixes is not None:  # the optimizer only takes parameters that require gradients
            for name, parameter in model.liveedit.liveedit_modules.named_parameters():
                parameter.requires_grad_(name.startswith(prefixes))
        if data_collator is None:
            rate = getattr(args, "fresh_target_rate", 0.0)
            pools = None
            if rate > 0:
                if kwargs.get("train_dataset") is None:
                    raise ValueError("fresh_target_rate > 0 needs a train_dataset to draw from")
                pools = CounterfactualTargets(
                    kwargs["train_dataset"], getattr(args, "novel_target_rate", 0.0)
                )
            data_collator = LiveEditDataCollator(
                model.liveedit, fresh_targets=pools, fresh_target_rate=rate
            )
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)
        if getattr(args, "max_train_minutes", None):
            self.add_callback(TimeBudgetCallback(args.max_train_minutes))
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

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, after checking that there is something to train.

        Args:
            model: as for ``transformers.Trainer.create_optimizer``.
        """
        # else torch's "optimizer got an empty parameter list", which does not say why
        trained = model if model is not None else self.model
        if not any(p.requires_grad for p in trained.parameters()):
            raise ValueError(
                "The LiveEdit modules are frozen (LiveEditModel.from_pretrained loads for "
                "inference): load the adapter with is_trainable=True to train it"
            )
        return super().create_optimizer(model)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """``Trainer.evaluate`` with the collator's random choices seeded by ``args.seed``.

        The collator draws the batch experts each row mixes in and the negatives of ``l_sr1``
        from torch's RNG: unseeded, two evaluations of the same model would differ. The RNG is
        forked, so training continues with the random stream it would have had without
        evaluating.

        Args:
            *args, **kwargs: as for ``transformers.Trainer.evaluate``.
        """
        training_collator = self.data_collator
        if isinstance(training_collator, LiveEditDataCollator):  # the records' own targets
            self.data_collator = replace(training_collator, fresh_target_rate=0.0)
        try:
            with torch.random.fork_rng(devices=[]):  # the collator draws on the CPU generator
                torch.manual_seed(self.args.seed)
                return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = training_collator

    # --- saving, loading and the Hub -------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the adapter folder, its loss curve and ``training_args.bin`` (main process only).

        Replaces the Trainer's ``model.safetensors`` of the whole (frozen) VLLM by the LiveEdit
        adapter (``LiveEditModel.save_pretrained``; the processor too, if the Trainer has one).
        Pushes to the Hub when ``args.push_to_hub`` is set and the call is the user's, as the
        Trainer does.

        Args:
            output_dir: target folder (default ``args.output_dir``).
            _internal_call: set by the Trainer's own calls (checkpoints, ``push_to_hub``).
        """
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save:
            repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id
            self.liveedit.save_pretrained(output_dir, repo_id=repo_id)
            plot_loss_curves(self.state.log_history, output_dir / LOSS_CURVE_NAME)
            torch.save(self.args, output_dir / TRAINING_ARGS_NAME)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            top = Path(self.args.output_dir)
            if self.args.push_to_hub and output_dir.resolve() != top.resolve():
                # A checkpoint: the Trainer then pushes args.output_dir, into which it copies the
                # weights files it knows (model.safetensors, adapter_config.json, ...) from the
                # checkpoint; LiveEdit's are copied here.
                top.mkdir(parents=True, exist_ok=True)
                for name in _ADAPTER_FILES:
                    if (output_dir / name).is_file():
                        shutil.copy(output_dir / name, top / name)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Complete the LiveEdit card of ``args.output_dir`` with the training's details.

        The Trainer's own card describes a fine-tuned ``model.safetensors`` and would replace
        the LiveEdit card (usage, configuration, edits, metadata): that card is kept, its
        metadata merged with the arguments given, and a training section (hyperparameters,
        last logged losses) added or replaced.

        Args:
            language, license, dataset: set in the card's metadata when given.
            tags: added to the card's tags (with ``generated_from_trainer``).
            finetuned_from: the base model's Hub id, when the card does not name it yet (a local
                path is ignored).
            model_name, tasks, dataset_tags, dataset_args: not used (the card's title and
                ``pipeline_tag`` are LiveEdit's).
        """
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir, "README.md")
        if not path.is_file():
            self.save_model(_internal_call=True)
        card = ModelCard.load(path)
        data = card.data
        extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
        data.tags = list(dict.fromkeys([*(data.tags or []), *extra_tags, "generated_from_trainer"]))
        base = hub_model_id(finetuned_from)
        if base and not data.get("base_model"):
            data.base_model, data.base_model_relation = base, "adapter"
            data.tags.append(f"base_model:adapter:{base}")
        for key, value in (("language", language), ("license", license), ("datasets", dataset)):
            if value:
                setattr(data, key, value)
        text = card.text.split(_TRAINING_SECTION)[0].rstrip()
        card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}\n\n{self._training_section()}")
        card.save(path)

    def _training_section(self) -> str:
        """The card's training section: hyperparameters and the last value of every loss."""
        lines = [
            _TRAINING_SECTION,
            "",
            "Trained with `LiveEditTrainer` (transformers Trainer):",
            "",
        ]
        hyperparameters = extract_hyperparameters_from_trainer(self)
        lines += [f"- {name}: {value}" for name, value in hyperparameters.items()]
        losses = {
            name: value
            for entry in self.state.log_history
            for name, value in entry.items()
            if "loss" in name and isinstance(value, (int, float))
        }
        if losses:
            lines += ["", "Last logged losses:", ""]
            lines += [f"- {name}: {value:.4g}" for name, value in losses.items()]
        return "\n".join(lines) + "\n"

    # Private Trainer hooks, kept: the Trainer has no public hook to load weights when resuming
    # or at the end (its defaults look for model.safetensors or a PEFT adapter and fail or warn).
    # The two loading overrides stay private on purpose: Trainer has no public hook for loading
    # a checkpoint that is not its own ``model.safetensors`` of the whole model, and writing the
    # frozen VLLM into every checkpoint, then loading it with ``strict=False``, would cost its
    # full size per checkpoint and skip load_generator's base-model and hash checks.
    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        self.load_generator(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self.load_generator(self.state.best_model_checkpoint)

    def load_generator(self, folder: str | Path, allow_base_model_mismatch: bool = False) -> None:
        """Load the LiveEdit modules' weights from an adapter folder or checkpoint.

        The same checks as ``LiveEditModel.from_pretrained``: the base model's fingerprint and
        weights' hash, and the generator's SHA-256 (a corrupt or replaced file is refused).

        Args:
            folder: The adapter folder or checkpoint.
            allow_base_model_mismatch: Warn instead of raising when the folder was saved on a
                base model with other weights (e.g. to start training for a new backbone from a
                generator trained on another one).

        Raises:
            ValueError: the folder was saved for another base model or edit layer, or its
                generator file is corrupt or does not fit the model's modules.
            OSError: a file cannot be read.
        """
        folder = Path(folder)
        config, extra = LiveEditConfig.from_pretrained(folder)
        require_keys(extra, ["base_model_fingerprint"], config_file(folder))
        liveedit = self.liveedit
        what = f"The checkpoint in {folder}"
        check_base_model(
            extra,
            liveedit.fingerprint(),
            liveedit.base_model_sha256,
            what,
            allow_base_model_mismatch,
        )
        path = folder / GENERATOR_WEIGHTS_NAME
        state = read_generator(path, config.torch_module_dtype, extra.get("generator_sha256"))
        try:
            liveedit.liveedit_modules.load_state_dict(state)
        except RuntimeError as error:  # other tensor names or shapes
            raise ValueError(
                f"{path} does not fit this model's LiveEdit modules: {error}"
            ) from error
