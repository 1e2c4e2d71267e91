"""Editing data: MMEdit-format loaders (E-VQA, E-IC, VLKEB) and the packaged benchmark."""

from __future__ import annotations

from hf_liveedit.data.mmedit import (
    COLUMNS,
    IMAGE_FIELDS,
    MMEDIT_FIELDS,
    load_benchmark,
    load_mmedit,
    open_image,
    with_images,
)
from hf_liveedit.data.prompts import format_prompt

__all__ = [
    "COLUMNS",
    "IMAGE_FIELDS",
    "MMEDIT_FIELDS",
    "format_prompt",
    "load_benchmark",
    "load_mmedit",
    "open_image",
    "with_images",
]
