"""Lifelong-editing evaluation: metrics, editors and the sequential protocol.

Modules: :mod:`~hf_liveedit.evaluation.metrics` (plain-Python metrics),
:mod:`~hf_liveedit.evaluation.cases` (records -> samples), :mod:`~hf_liveedit.evaluation.scoring`,
:mod:`~hf_liveedit.evaluation.protocol`, :mod:`~hf_liveedit.evaluation.report` and
:mod:`~hf_liveedit.evaluation.editors`. See ``docs/evaluation.md``.
"""

from __future__ import annotations

from pathlib import Path

#: Folder of the ``evaluate`` metric module: ``evaluate.load(str(METRIC_PATH))``.
METRIC_PATH = Path(__file__).parent / "liveedit_metrics"

__all__ = ["METRIC_PATH"]
