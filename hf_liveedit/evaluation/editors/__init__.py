"""Editors compared by the harness: LiveEdit and the baselines, behind one interface."""

from __future__ import annotations

from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.evaluation.editors.ft import FTLEditor, FTMEditor
from hf_liveedit.evaluation.editors.grace import GraceEditor
from hf_liveedit.evaluation.editors.lemoe import LEMoEEditor
from hf_liveedit.evaluation.editors.liveedit import LiveEditEditor
from hf_liveedit.evaluation.editors.tp import TPEditor

#: command-line key -> baseline editor class (LiveEdit needs its trained adapter: see
#: :meth:`LiveEditEditor.from_pretrained`).
BASELINES: dict[str, type[Editor]] = {
    "ft-l": FTLEditor,
    "ft-m": FTMEditor,
    "tp": TPEditor,
    "lemoe": LEMoEEditor,
    "grace": GraceEditor,
}

__all__ = [
    "BASELINES",
    "Editor",
    "FTLEditor",
    "FTMEditor",
    "GraceEditor",
    "LEMoEEditor",
    "LiveEditEditor",
    "TPEditor",
]
