"""Validation and fingerprinting of edit images."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image


def check_image_source(image: object) -> None:
    """Check an edit image without decoding it: a PIL image, or the path of an existing file.

    Raises:
        TypeError: for anything else (numpy arrays, tensors, bytes, None, ...).
        ValueError: for a URL (images are never downloaded: fetch it and pass the file or image).
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(image, Image.Image):
        return
    if isinstance(image, (str, Path)):
        if str(image).startswith(("http://", "https://")):
            raise ValueError(
                f"Image URLs are not downloaded: {image!s}. Fetch it and pass the file or a PIL image."
            )
        if not Path(image).is_file():
            raise FileNotFoundError(f"Image file not found: {image!s}")
        return
    raise TypeError(
        f"Expected a PIL.Image.Image or a path to an image file, got {type(image).__name__}"
    )


def load_image(image: Image.Image | str | Path) -> Image.Image:
    """Return an RGB PIL image from a PIL image or a file path (see :func:`check_image_source`).

    Raises:
        ValueError: an unreadable image file, or an image with no pixels.
    """
    check_image_source(image)
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
    else:
        try:
            with Image.open(image) as opened:
                rgb = opened.convert("RGB")
        except (OSError, Image.DecompressionBombError) as error:
            raise ValueError(f"Cannot read image file {image!s}: {error}") from error
    if rgb.width == 0 or rgb.height == 0:
        raise ValueError(f"The image has no pixels ({rgb.width}x{rgb.height})")
    return rgb


def image_sha256(image: Image.Image) -> str:
    """SHA-256 of an RGB image's size and pixels (independent of file format)."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.convert("RGB").tobytes())
    return digest.hexdigest()
