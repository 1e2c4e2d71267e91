"""Trainer callbacks of the LiveEdit trainer."""

from __future__ import annotations

import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

__all__ = ["TimeBudgetCallback"]


class TimeBudgetCallback(TrainerCallback):
    """Stop training, with a checkpoint, once a wall-clock budget is spent.

    For runs longer than one sitting (a CPU session, a lease on a GPU): the run ends at a step
    boundary after ``minutes``, saves a checkpoint there, and the next run resumes from it.

    Args:
        minutes: the budget, counted from the start of ``train``.
    """

    def __init__(self, minutes: float):
        self.seconds = 60 * minutes
        self.started: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self.started = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if self.started is not None and time.monotonic() - self.started >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
