"""KGeography's maps: regions with capitals and flags, and location maps of each region."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KGEOGRAPHY_DIR = "usr/share/kgeography"

# Maps of whole continents or the world list countries; every other map lists the regions of the
# country named here (KGeography's own map names are not all country names).
MULTI_COUNTRY_MAPS = {
    "World",
    "Africa",
    "Asia",
    "Europe",
    "Oceania",
    "North and Central America",
    "South America",
    "Caribbean",
}
CONTINENT_OF_MAP = {
    "Africa": "Africa",
    "Asia": "Asia",
    "Europe": "Europe",
    "Oceania": "Oceania",
    "North and Central America": "North America",
    "Caribbean": "North America",
    "South America": "South America",
}


@dataclass(frozen=True)
class Division:
    """One region of a KGeography map."""

    name: str
    capital: str
    flag: str  # file name under flags/, "" when none
    color: tuple[int, int, int]


@dataclass(frozen=True)
class KgMap:
    """One KGeography map (a ``.kgm`` file and its colour-coded PNG)."""

    stem: str
    name: str
    image: Path
    divisions: tuple[Division, ...]


def read_maps(root: Path) -> list[KgMap]:
    """Parse every KGeography map under a package root.

    Args:
        root: Root of the unpacked ``kgeography-data`` package.

    Returns:
        Maps sorted by file name, each with its non-ignored divisions.
    """
    base = root / KGEOGRAPHY_DIR
    maps = []
    for path in sorted(base.glob("*.kgm")):
        tree = ET.parse(path).getroot()
        divisions = []
        for node in tree.iter("division"):
            if node.findtext("ignore", "").strip() == "yes":
                continue
            color = tuple(int(node.findtext(f"color/{c}", "0")) for c in ("red", "green", "blue"))
            divisions.append(
                Division(
                    name=node.findtext("name", "").strip(),
                    capital=node.findtext("capital", "").strip(),
                    flag=node.findtext("flag", "").strip(),
                    color=color,
                )
            )
        maps.append(
            KgMap(
                path.stem,
                tree.findtext("name", "").strip(),
                base / tree.findtext("mapFile", ""),
                tuple(divisions),
            )
        )
    return maps


def flag_path(root: Path, division: Division) -> Path:
    """Return the flag image file of a division.

    Args:
        root: Root of the unpacked ``kgeography-data`` package.
        division: A division with a ``flag``.

    Returns:
        The PNG path.
    """
    return root / KGEOGRAPHY_DIR / "flags" / division.flag


@lru_cache(maxsize=2)
def _map_pixels(path: Path):
    """Decoded RGB pixels of a map (regions are drawn map by map, so this is hit often)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def region_mask(kg_map: KgMap, division: Division):
    """Boolean mask of a region's pixels on its map.

    Args:
        kg_map: The map.
        division: One of its divisions.

    Returns:
        A ``[height, width]`` bool array (all False if the colour is not drawn).
    """
    import numpy as np

    pixels = _map_pixels(kg_map.image)
    return np.all(pixels == np.array(division.color, dtype=pixels.dtype), axis=-1)


def render_location(kg_map: KgMap, division: Division, size: int = 384):
    """Draw where a region lies: the region in red on its map, other land grey, cropped around it.

    Args:
        kg_map: The map the division belongs to.
        division: The region to highlight.
        size: Longest side of the result in pixels.

    Returns:
        An RGB ``PIL.Image.Image``.
    """
    import numpy as np
    from PIL import Image

    pixels = _map_pixels(kg_map.image)
    mask = region_mask(kg_map, division)
    if not mask.any():
        raise ValueError(f"region {division.name!r} has no pixels on map {kg_map.stem}")
    # land = anything coloured that is not the sea/background white or the black borders
    land = ~(np.all(pixels >= 250, axis=-1) | np.all(pixels <= 5, axis=-1))
    out = np.full(pixels.shape, 255, dtype=np.uint8)
    out[land] = (200, 200, 200)
    out[np.all(pixels <= 5, axis=-1)] = (90, 90, 90)
    out[mask] = (220, 30, 30)
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    # keep context around the region: a box three times its extent, at least a quarter of the map
    extent = max(np.ptp(rows), np.ptp(cols), min(height, width) // 4)
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    half = int(extent * 1.5)
    box = (max(cx - half, 0), max(cy - half, 0), min(cx + half, width), min(cy + half, height))
    crop = Image.fromarray(out).crop(box)
    crop.thumbnail((size, size))
    return crop
