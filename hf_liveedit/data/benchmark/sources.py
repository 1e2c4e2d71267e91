"""Real images from registry packages, each behind a small loader.

Edit images and modal-generality ("rephrase") images come from disjoint sources, so M-Gen asks
the editor to recognise an entity in a rendering it never saw at edit time:

- edit images: KGeography flags (countries and regions), GCompris "explore monuments" photos;
- rephrase images: Noto Color Emoji flags, EmojiOne round flags, CIA World Factbook flags
  (gnome-screensaver-flags), flagpy renderings, KGeography location maps (regions), GCompris
  categorization / details photos (landmarks);
- locality images: Tux Paint stamps and GCompris animal photos, unrelated to every edit.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

MAX_SIDE = 384  # images are stored no larger than this


@dataclass(frozen=True)
class ImageRef:
    """A real image: which source it comes from and how to load it."""

    source: str
    key: str  # unique within the source; names the stored file
    load: Callable[[], Image.Image] = field(compare=False, repr=False)
    credit: str = field(default="", compare=False)  # author / licence / origin, where known

    @property
    def relative_path(self) -> str:
        """Path of the stored file, relative to the benchmark folder."""
        return f"images/{self.source}/{self.key}.png"


def shrink(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Return an RGB copy no larger than ``max_side`` (transparent pixels on white).

    Args:
        image: Any PIL image.
        max_side: Longest side allowed.

    Returns:
        The RGB image.
    """
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    return image


def open_file(path: Path) -> Callable[[], Image.Image]:
    """Return a loader for an image file.

    Args:
        path: The file.

    Returns:
        A function opening it as RGB.
    """

    def load() -> Image.Image:
        with Image.open(path) as image:
            return shrink(image)

    return load


def open_bytes(data: bytes) -> Callable[[], Image.Image]:
    """Return a loader for an image held in memory (e.g. from a ``.rcc`` bundle).

    Args:
        data: Encoded image bytes.

    Returns:
        A function decoding it as RGB.
    """

    def load() -> Image.Image:
        with Image.open(io.BytesIO(data)) as image:
            return shrink(image)

    return load


def regional_indicators(iso2: str) -> str:
    """Return the emoji flag sequence of a two-letter country code.

    Args:
        iso2: ISO 3166-1 alpha-2 code.

    Returns:
        Two regional-indicator characters.
    """
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in iso2.upper())


def noto_flags(root: Path, codes: list[str]) -> dict[str, ImageRef]:
    """Noto Color Emoji waving flags, drawn with Pillow (bitmap strike 109 px).

    Args:
        root: Root of the unpacked ``fonts-noto-color-emoji`` package.
        codes: ISO alpha-2 codes to draw.

    Returns:
        ``{iso2: ImageRef}`` for codes the font has a flag glyph for.
    """
    font = ImageFont.truetype(str(root / "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"), 109)
    refs = {}
    for iso2 in codes:
        text = regional_indicators(iso2)
        # a sequence the font cannot join renders as two letter glyphs, about twice as wide
        if font.getlength(text) > 150:
            continue

        def load(text: str = text) -> Image.Image:
            image = Image.new("RGB", (160, 136), "white")
            ImageDraw.Draw(image).text((12, 0), text, font=font, embedded_color=True)
            return image.crop(_content_box(image))

        refs[iso2] = ImageRef("noto-emoji", iso2.lower(), load)
    return refs


def _content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the non-white pixels, with a small margin."""
    from PIL import ImageChops

    diff = ImageChops.difference(image, Image.new("RGB", image.size, "white"))
    left, top, right, bottom = diff.getbbox() or (0, 0, *image.size)
    return (
        max(left - 4, 0),
        max(top - 4, 0),
        min(right + 4, image.width),
        min(bottom + 4, image.height),
    )


def gemojione_flags(root: Path) -> dict[str, ImageRef]:
    """EmojiOne (gemojione) round flags.

    Args:
        root: Root of the unpacked ``ruby-gemojione`` package.

    Returns:
        ``{iso2: ImageRef}``.
    """
    base = next((root / "usr/share/rubygems-integration/all/gems").glob("gemojione-*"))
    index = json.loads((base / "config/index.json").read_text(encoding="utf-8"))
    refs = {}
    for entry in index.values():
        codepoints = entry["unicode"].split("-")
        if entry.get("category") != "flags" or len(codepoints) != 2:
            continue
        iso2 = "".join(chr(int(c, 16) - 0x1F1E6 + ord("A")) for c in codepoints)
        path = base / "assets/png" / f"{entry['unicode']}.png"
        if iso2.isalpha() and path.is_file():
            refs[iso2] = ImageRef("emojione", iso2.lower(), open_file(path))
    return refs


def cia_flags(root: Path, fips_to_iso2: dict[str, str]) -> dict[str, ImageRef]:
    """CIA World Factbook flags (gnome-screensaver-flags), cropped out of their info cards.

    Each card is 1024x768: the country name at the top, the framed flag at the left, a text
    description at the right. The flag is the bounding box of non-background pixels in the
    left half below the title.

    Args:
        root: Root of the unpacked ``gnome-screensaver-flags`` package.
        fips_to_iso2: FIPS 10-4 code (the file names) -> ISO alpha-2 code.

    Returns:
        ``{iso2: ImageRef}``.
    """
    refs = {}
    for path in sorted((root / "usr/share/backgrounds/flags").glob("*.gif")):
        iso2 = fips_to_iso2.get(path.stem.upper())
        if iso2:
            refs[iso2] = ImageRef("cia-factbook", iso2.lower(), _cia_loader(path))
    return refs


def _cia_loader(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from PIL import ImageChops

        with Image.open(path) as card:
            card = card.convert("RGB")
        region = card.crop((0, 160, 560, card.height))
        background = Image.new("RGB", region.size, region.getpixel((2, region.height - 2)))
        box = ImageChops.difference(region, background).getbbox()
        return shrink(region.crop(box) if box else region)

    return load


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle numpy arrays only (flagpy stores each flag as a pickled ndarray)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def flagpy_flags(
    package_dir: Path, name_to_iso2: Callable[[str], str | None]
) -> dict[str, ImageRef]:
    """flagpy's flag renderings (90x180 RGB arrays).

    Args:
        package_dir: The installed ``flagpy`` package folder.
        name_to_iso2: Resolves flagpy's country names to ISO alpha-2 codes.

    Returns:
        ``{iso2: ImageRef}``.
    """
    refs = {}
    for path in sorted((package_dir / "flags").glob("*.pkl")):
        iso2 = name_to_iso2(path.stem.replace("_", " "))
        if iso2:
            refs[iso2] = ImageRef("flagpy", iso2.lower(), _flagpy_loader(path))
    return refs


def _flagpy_loader(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with open(path, "rb") as handle:
            array = _ArrayUnpickler(handle).load()
        return shrink(Image.fromarray(array[..., :3]))

    return load
