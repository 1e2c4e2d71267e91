"""hf-liveedit: lifelong knowledge editing for vision-language models (LiveEdit, CVPR 2025).

Quick start::

    from hf_liveedit import LiveEditConfig, get_liveedit_model

    model = get_liveedit_model(vllm, LiveEditConfig(), processor=processor)
    model.add_edit(image, "What is the capital of the country whose flag is shown?", "Lyon")
    model.generate(**model.build_inputs(image, "What is the capital of the country whose flag is shown?"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backbones import BackboneSpec, get_backbone_spec, supported_model_classes
    from .config import LiveEditConfig
    from .model import LiveEditModel, get_liveedit_model
    from .repository import EditRecord, ExpertRepository

__version__ = "0.1.0"

# Public name -> submodule. Imported on first use (PEP 562) so that `import hf_liveedit.cli`
# does not pull in torch and transformers: `hf-liveedit --help` stays well under a second.
_LAZY = {
    "BackboneSpec": "backbones",
    "get_backbone_spec": "backbones",
    "supported_model_classes": "backbones",
    "LiveEditConfig": "config",
    "LiveEditModel": "model",
    "get_liveedit_model": "model",
    "EditRecord": "repository",
    "ExpertRepository": "repository",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "BackboneSpec",
    "EditRecord",
    "ExpertRepository",
    "LiveEditConfig",
    "LiveEditModel",
    "get_backbone_spec",
    "get_liveedit_model",
    "supported_model_classes",
]
