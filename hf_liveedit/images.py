"""Validation and fingerprinting of edit images."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image


def load_image(image: Image.Image | str | Path) -> Image.Image:
    """Return an RGB PIL image from a PIL image or a file path.

    Raises:
        TypeError: for anything else (numpy arrays, tensors, URLs as bytes, None, ...).
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image file not found: {path}")
        with Image.open(path) as opened:
            return opened.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    raise TypeError(
        f"Expected a PIL.Image.Image or a path to an image file, got {type(image).__name__}"
    )


def image_sha256(image: Image.Image) -> str:
    """SHA-256 of an RGB image's size and pixels (independent of file format)."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.convert("RGB").tobytes())
    return digest.hexdigest()
