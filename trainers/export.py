"""Export a trained generator compactly (half-precision weights), e.g. to ship it in a package."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hf_liveedit.model import LiveEditModel
from hf_liveedit.persistence import EDITS_NAME, EXPERTS_WEIGHTS_NAME, GENERATOR_WEIGHTS_NAME

__all__ = ["export_generator"]


def export_generator(
    liveedit: LiveEditModel, directory: str | Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Save the generator alone (no experts) with its weights stored in ``dtype``.

    The model's LiveEdit weights are first rounded to ``dtype`` in place, so the recorded
    generator SHA-256 is the one ``LiveEditModel.from_pretrained`` reproduces when it loads the
    stored weights back into its (float32) modules.

    Args:
        liveedit: the trained model (its expert repository is not exported).
        directory: target folder (``LiveEditModel.save_pretrained`` layout, minus experts).
        dtype: storage dtype of ``generator.safetensors``.

    Returns:
        The folder written.
    """
    directory = Path(directory)
    with torch.no_grad():
        for tensor in liveedit.liveedit_modules.state_dict().values():
            tensor.copy_(tensor.to(dtype))
    liveedit.save_pretrained(directory)
    weights = directory / GENERATOR_WEIGHTS_NAME
    save_file(
        {name: value.to(dtype) for name, value in load_file(str(weights)).items()}, str(weights)
    )
    for name in (EXPERTS_WEIGHTS_NAME, EDITS_NAME):
        (directory / name).unlink(missing_ok=True)
    return directory
