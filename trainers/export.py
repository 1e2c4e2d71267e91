"""Export a trained generator compactly (half-precision weights), e.g. to ship it in a package."""

from __future__ import annotations

from pathlib import Path

import torch

from hf_liveedit.model import LiveEditModel

__all__ = ["export_generator"]


def export_generator(
    liveedit: LiveEditModel, directory: str | Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Save the generator alone (no experts) with its weights stored in ``dtype``.

    The model's LiveEdit weights are first rounded to ``dtype`` in place, so the recorded
    generator SHA-256 is the one ``LiveEditModel.from_pretrained`` reproduces when it loads the
    stored weights back into its (float32) modules. The folder is written as
    ``LiveEditModel.save_pretrained`` writes it: atomically, with the umask's file modes, and
    without the experts it may have held.

    Args:
        liveedit: the trained model (its expert repository is not exported).
        directory: target folder (``LiveEditModel.save_pretrained`` layout, minus experts).
        dtype: storage dtype of ``generator.safetensors``.

    Returns:
        The folder written.
    """
    with torch.no_grad():
        for tensor in liveedit.liveedit_modules.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype))
    liveedit.save_pretrained(directory, include_experts=False, generator_dtype=dtype)
    return Path(directory)
