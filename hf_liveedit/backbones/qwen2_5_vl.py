"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): Qwen2-VL's layout and prompt format."""

from __future__ import annotations

from .qwen2_vl import Qwen2VLSpec


class Qwen2_5_VLSpec(Qwen2VLSpec):
    """Same decoder, image block and prompt format as Qwen2-VL (the vision tower differs)."""

    model_class_names = ("Qwen2_5_VLForConditionalGeneration",)
    model_types = ("qwen2_5_vl",)
