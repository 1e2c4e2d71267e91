"""Real captioned images that ship in Debian packages, for training the LLaVA projector.

The packages are read where dpkg installed them or, when they are not installed, from the
hf-liveedit cache, where :func:`hf_liveedit.packages.debian_root` unpacks them (a data download,
no install; the benchmark build shares that cache). Every loader takes that root.

Each source turns one package's files into :class:`CaptionedImage` records with a short name
(the answer to "What is shown?") and a one-sentence caption (the answer to "Describe the
image."). ``key`` identifies the entity, so a held-out split by key never shows a held-out
entity in training.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..data.benchmark.paths import debian_cache_dir
from ..data.benchmark.rcc import read_rcc_file
from ..packages import debian_root


@dataclass(frozen=True)
class CaptionedImage:
    """One real image with its name and caption.

    Attributes:
        source: Name of the :class:`ImageSource` it came from.
        key: Entity id, unique within the source (used for the held-out split).
        name: Short answer to "What is shown?", or empty when there is none.
        caption: One-sentence answer to "Describe the image.".
        path: Image file, or empty when ``blob`` holds the bytes.
        blob: Encoded image bytes (images read out of resource bundles).
    """

    source: str
    key: str
    name: str
    caption: str
    path: str = ""
    blob: bytes = b""

    def load(self) -> Image.Image:
        """Decode the image as RGB, with any transparency composited onto white."""
        image = Image.open(io.BytesIO(self.blob) if self.blob else self.path)
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")


@dataclass(frozen=True)
class ImageSource:
    """A Debian package of captioned images.

    Attributes:
        name: Short id used in records and the model card.
        apt_package: The Debian package that ships the images.
        description: What the images are, for the model card.
        licence_paths: Path fragments whose ``debian/copyright`` stanzas cover the files used;
            ``"*"`` stands for the catch-all ``Files: *`` stanza.
        load: Reads the records from the package's files under the root it is given.
    """

    name: str
    apt_package: str
    description: str
    licence_paths: tuple[str, ...]
    load: Callable[[Path], list[CaptionedImage]]

    def root(self, allow_download: bool = True) -> Path:
        """Root of the package's files: ``/`` when installed, else its unpacked copy in the cache.

        Args:
            allow_download: Fetch and unpack the package when it is in neither place.
        """
        return debian_root(self.apt_package, debian_cache_dir(), allow_download=allow_download)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _short_name(description: str, max_words: int = 4) -> str | None:
    """``"A brown slug."`` -> ``"Brown slug"``; None when the description is not a short noun."""
    text = re.sub(r"^(a|an|the)\s+", "", description.strip().rstrip(".!"), flags=re.I)
    if not text or len(text.split()) > max_words or re.search(r"[!?;:()$€“”\"]", text):
        return None
    return text[0].upper() + text[1:]


TUXPAINT_DIR = "usr/share/tuxpaint/stamps"


def load_tuxpaint(root: Path) -> list[CaptionedImage]:
    """Tux Paint stamps: drawings and photos, each with a one-line English description."""
    records = []
    stamps = root / TUXPAINT_DIR
    for png in sorted(stamps.rglob("*.png")):
        desc_file = png.with_suffix(".txt")
        if not desc_file.is_file():
            continue
        first = desc_file.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        if not first or "=" in first[0] or not first[0].strip():
            continue  # mirrored variants carry only translations
        caption = _sentence(first[0])
        name = _short_name(caption) or ""  # long descriptions only train captioning
        key = str(png.relative_to(stamps).with_suffix(""))
        records.append(CaptionedImage("tuxpaint", key, name, caption, path=str(png)))
    return records


GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
GCOMPRIS_ACTIVITIES = ("explore_monuments", "explore_world_animals", "explore_farm_animals")
_QSTR = r'qsTr\("((?:[^"\\]|\\.)*)"\)'


def load_gcompris(root: Path) -> list[CaptionedImage]:
    """GCompris "explore" activities: photos of monuments and animals with names and facts."""
    records = []
    for activity in GCOMPRIS_ACTIVITIES:
        # QML refers to resources as "qrc:/path"; the reader returns paths without the "/".
        files = {
            f"/{path}": data
            for path, data in read_rcc_file(root / GCOMPRIS_RCC / f"{activity}.rcc").items()
        }
        for board in sorted(k for k in files if "/resource/board/" in k and k.endswith(".qml")):
            qml = files[board].decode("utf-8")
            starts = [m.start() for m in re.finditer(r'"title"\s*:', qml)] + [len(qml)]
            for begin, end in zip(starts, starts[1:]):
                block = qml[begin:end]
                title = re.search(r'"title"\s*:\s*' + _QSTR, block)
                text = re.search(r'"text"\s*:\s*' + _QSTR, block)
                image = re.search(r'"image2"\s*:\s*"qrc:([^"]+)"', block)
                if not (title and text and image) or image.group(1) not in files:
                    continue
                name = title.group(1).replace("\\'", "'")
                first = re.split(r"(?<=[.!?])\s", text.group(1).replace("\\'", "'"))[0]
                caption = _sentence(first) if len(first.split()) <= 25 else f"A photo of {name}."
                records.append(
                    CaptionedImage(
                        "gcompris", image.group(1), name, caption, blob=files[image.group(1)]
                    )
                )
    return list({r.key: r for r in records}.values())  # a photo may appear on two boards


KGEOGRAPHY_DIR = "usr/share/kgeography"


def load_kgeography(root: Path) -> list[CaptionedImage]:
    """KGeography: flags of countries and regions, named by the maps that use them."""
    flags: dict[str, str] = {}
    maps = root / KGEOGRAPHY_DIR
    for kgm in sorted(maps.glob("*.kgm")):
        for division in ET.parse(kgm).getroot().iter("division"):
            name, flag = division.findtext("name"), division.findtext("flag")
            if name and flag and (maps / "flags" / flag).is_file():
                # "French Polynesia (France)" -> "French Polynesia"
                flags.setdefault(flag, re.sub(r"\s*\(.*\)$", "", name.strip()))
    return [
        CaptionedImage(
            "kgeography",
            flag,
            f"Flag of {name}",
            f"The flag of {name}.",
            path=str(maps / "flags" / flag),
        )
        for flag, name in sorted(flags.items())
    ]


GEMOJIONE_DIR = "usr/share/rubygems-integration/all/gems/gemojione-3.3.0"


def load_gemojione(root: Path) -> list[CaptionedImage]:
    """EmojiOne 2 emoji (64x64) with their Unicode names; skin-tone variants are skipped."""
    gem = root / GEMOJIONE_DIR
    index = json.loads((gem / "config" / "index.json").read_text(encoding="utf-8"))
    records = []
    for entry in index.values():
        png = gem / "assets" / "png" / f"{entry['unicode'].upper()}.png"
        skin_tone = " tone " in f" {entry['name']} "
        if entry["category"] in ("modifier", "extras") or skin_tone or not png.is_file():
            continue
        label = entry["name"]
        if entry["category"] == "flags":
            country = label.title().replace(" And ", " and ").replace("The ", "the ")
            name, caption = f"Flag of {country}", f"An emoji of the flag of {country}."
        else:
            name = label[0].upper() + label[1:]
            article = "an" if label[0] in "aeiou" else "a"
            caption = f"An emoji of {article} {label}."
        records.append(CaptionedImage("gemojione", entry["unicode"], name, caption, path=str(png)))
    return records


SOURCES: dict[str, ImageSource] = {
    s.name: s
    for s in (
        ImageSource(
            "tuxpaint",
            "tuxpaint-stamps-default",
            "Tux Paint rubber stamps (drawings and photos) with English descriptions",
            ("*",),
            load_tuxpaint,
        ),
        ImageSource(
            "gcompris",
            "gcompris-qt-data",
            "GCompris monument and animal photos (explore activities) with names",
            ("*", *GCOMPRIS_ACTIVITIES),
            load_gcompris,
        ),
        ImageSource(
            "kgeography",
            "kgeography-data",
            "KGeography flags of countries and regions",
            ("*",),
            load_kgeography,
        ),
        ImageSource(
            "gemojione",
            "ruby-gemojione",
            "EmojiOne emoji images with Unicode names",
            ("assets/",),
            load_gemojione,
        ),
    )
}


def load_sources(names: list[str] | None = None) -> list[CaptionedImage]:
    """Read all records, fetching a package into the cache when it is not installed.

    Args:
        names: Sources to use (default: all of :data:`SOURCES`).

    Returns:
        All records, in a deterministic order.

    Raises:
        hf_liveedit.packages.MissingPackageError: If a package can be neither found nor fetched.
    """
    chosen = [SOURCES[n] for n in (names or list(SOURCES))]
    roots = [source.root() for source in chosen]  # fetch all first: fail before reading any
    return [record for source, root in zip(chosen, roots) for record in source.load(root)]


def copyright_licences(source: ImageSource) -> list[str]:
    """Licences that the package's ``debian/copyright`` gives for the files a source uses.

    Args:
        source: The image source.

    Returns:
        Sorted licence names (e.g. ``["CC-BY-SA-3.0", "GPL-3+"]``).
    """
    doc = source.root(allow_download=False) / "usr/share/doc" / source.apt_package
    text = (doc / "copyright").read_text(encoding="utf-8")
    licences = set()
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", stanza, flags=re.M)
        licence = re.search(r"^License:\s*(\S.*)$", stanza, flags=re.M)
        if not (files and licence):
            continue
        patterns = files.group(1).split()
        catch_all = "*" in source.licence_paths and patterns == ["*"]
        if catch_all or any(f != "*" and f in p for f in source.licence_paths for p in patterns):
            licences.add(licence.group(1).strip())
    return sorted(licences)
