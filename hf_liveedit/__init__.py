"""hf-liveedit: lifelong knowledge editing for vision-language models (LiveEdit, CVPR 2025).

Quick start::

    from hf_liveedit import LiveEditConfig, get_liveedit_model

    model = get_liveedit_model(vllm, LiveEditConfig(), processor=processor)
    model.add_edit(image, "What is the capital of the country whose flag is shown?", "Lyon")
    model.generate(**model.build_inputs(image, "What is the capital of the country whose flag is shown?"))
"""

from __future__ import annotations

from .backbones import BackboneAdapter, get_backbone_adapter, supported_model_classes
from .config import LiveEditConfig
from .model import LiveEditModel, get_liveedit_model
from .repository import EditRecord, ExpertRepository

__version__ = "0.1.0"

__all__ = [
    "BackboneAdapter",
    "EditRecord",
    "ExpertRepository",
    "LiveEditConfig",
    "LiveEditModel",
    "get_backbone_adapter",
    "get_liveedit_model",
    "supported_model_classes",
]
