"""Training of the LiveEdit generator (installed as `hf_liveedit.trainers`).

``LiveEditTrainer`` is a ``transformers.Trainer``; ``LiveEditDataCollator`` turns MMEdit-format
records into its batches; ``LiveEditTrainingModel`` computes every loss term in one forward;
``losses`` holds the terms as pure tensor functions.
"""

from __future__ import annotations

from .collator import GENERALITY_KINDS, LiveEditDataCollator, RowKind
from .model import LOSS_TERMS, LiveEditTrainingModel, edit_layer_override
from .plot import LOSS_CURVE_NAME, plot_loss_curves
from .trainer import LiveEditTrainer, LiveEditTrainingArguments

__all__ = [
    "GENERALITY_KINDS",
    "LOSS_CURVE_NAME",
    "LOSS_TERMS",
    "LiveEditDataCollator",
    "LiveEditTrainer",
    "LiveEditTrainingArguments",
    "LiveEditTrainingModel",
    "RowKind",
    "edit_layer_override",
    "plot_loss_curves",
]
