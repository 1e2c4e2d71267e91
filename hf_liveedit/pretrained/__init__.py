"""Trained LiveEdit generators that ship inside the package.

``default-generator/`` is the generator trained with ``hf-liveedit train`` for the embedded
default backbone (:func:`hf_liveedit.embedded.load_default_backbone`) on the packaged
benchmark's train split; load it with ``LiveEditModel.from_pretrained(model,
default_generator_dir(), processor=processor)``. Its ``README.md`` and ``liveedit_config.json``
say how it was trained.
"""

from __future__ import annotations

from pathlib import Path

from ..config import config_file

__all__ = ["default_generator_dir"]


def default_generator_dir() -> Path:
    """The folder of the packaged generator for the default backbone.

    Returns:
        A LiveEdit adapter folder (``liveedit_config.json`` + ``generator.safetensors``).

    Raises:
        FileNotFoundError: the package was installed without it.
    """
    folder = Path(__file__).parent / "default-generator"
    if not config_file(folder).is_file():
        raise FileNotFoundError(
            f"no packaged generator in {folder}; train one with `hf-liveedit train --export {folder}`"
        )
    return folder
