"""GCompris photos: landmarks that have two distinct photos, and animal photos."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hf_liveedit.data.benchmark.rcc import read_rcc_file
from hf_liveedit.data.benchmark.sources import ImageRef, open_bytes

RCC_DIR = "usr/share/gcompris-qt/rcc"
ACTIVITIES = "gcompris/src/activities"


@dataclass(frozen=True)
class Landmark:
    """A landmark with its country; the photo files are relative to the activities folder."""

    name: str
    country: str
    edit_photo: str  # in explore_monuments (edit source)
    rephrase_photo: str  # in categorization or details (never an edit image)


# Landmarks GCompris shows in two distinct photos (the Colosseum, the Brandenburg Gate and
# Neuschwanstein appear twice too, but as the same photo; its second "Victoria Memorial" is the
# London one, not Kolkata's), with the country GCompris's explore_monuments
# boards file them under (the "wonders" board names the country in each description).
def _landmark(name: str, country: str, edit: str, other: str) -> Landmark:
    folder = (
        "details/resource/image"
        if other.endswith("_background.webp")
        else "categorization/resource/images/monuments"
    )
    return Landmark(name, country, f"explore_monuments/resource/{edit}", f"{folder}/{other}")


LANDMARKS: tuple[Landmark, ...] = tuple(
    _landmark(*row)
    for row in (
        (
            "Christ the Redeemer",
            "Brazil",
            "wonders/christTheRedeemer.webp",
            "christTheRedeemer.webp",
        ),
        ("the Great Wall of China", "China", "wonders/greatWallofChina.webp", "greatWall.webp"),
        ("the Taj Mahal", "India", "wonders/tajMahal.webp", "TajMahal_background.webp"),
        ("the Qutub Minar", "India", "india/qutubMinar.webp", "kutubMinar.webp"),
        ("the Eiffel Tower", "France", "france/eiffelTower.webp", "TourEiffel_background.webp"),
        (
            "the Château de Chenonceau",
            "France",
            "france/chateaudeChenonceau.webp",
            "Chenonceau_background.webp",
        ),
        ("Mount Rushmore", "United States", "usa/mountRushmore.webp", "mountRushmore.webp"),
        (
            "the Statue of Liberty",
            "United States",
            "usa/statueofLiberty.webp",
            "statueOfLiberty.webp",
        ),
        (
            "the Great Pyramid of Giza",
            "Egypt",
            "egypt/greatPyramidOfGiza.webp",
            "GizahPyramids_background.webp",
        ),
    )
)


def read_bundles(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read GCompris resource bundles into one ``{path under activities/: bytes}`` map.

    Args:
        root: Root of the unpacked ``gcompris-qt-data`` package.
        names: Bundle names without ``.rcc``.

    Returns:
        Files keyed by their path below ``gcompris/src/activities/``.
    """
    files = {}
    for name in names:
        for path, data in read_rcc_file(root / RCC_DIR / f"{name}.rcc").items():
            if path.startswith(ACTIVITIES + "/"):
                files[path[len(ACTIVITIES) + 1 :]] = data
    return files


def landmark_images(files: dict[str, bytes]) -> list[tuple[Landmark, ImageRef, ImageRef]]:
    """Pair each landmark with its edit photo and its rephrase photo.

    Args:
        files: Output of :func:`read_bundles` over explore_monuments, categorization, details.

    Returns:
        ``(landmark, edit image, rephrase image)`` for landmarks whose two photos exist.
    """
    out = []
    for landmark in LANDMARKS:
        if landmark.edit_photo in files and landmark.rephrase_photo in files:
            key = re.sub(r"[^a-z0-9]+", "-", landmark.name.lower()).strip("-")
            out.append(
                (
                    landmark,
                    ImageRef(
                        "gcompris-monuments",
                        key,
                        open_bytes(files[landmark.edit_photo]),
                        photo_credit(files, landmark.edit_photo),
                    ),
                    ImageRef(
                        "gcompris-photos",
                        key,
                        open_bytes(files[landmark.rephrase_photo]),
                        photo_credit(files, landmark.rephrase_photo),
                    ),
                )
            )
    return out


def photo_credit(files: dict[str, bytes], path: str) -> str:
    """The author, licence and origin GCompris's README files give for one image.

    READMEs hold blank-line separated blocks of ``Key: value`` lines (Copyright, License,
    Source, Comment) followed by the file names they cover, relative to the README's folder.

    Args:
        files: Output of :func:`read_bundles`.
        path: The image's path in ``files``.

    Returns:
        ``"Copyright ...; License ...; Source ..."`` or ``""`` when no README names the file.
    """
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        readme = files.get("/".join(parts[:depth] + ["README"]))
        if readme is None:
            continue
        name = "/".join(parts[depth:])
        for block in readme.decode("utf-8", errors="replace").split("\n\n"):
            lines = [line.strip() for line in block.strip().splitlines()]
            if name in lines:
                return "; ".join(
                    line for line in lines if re.match(r"(Copyright|License|Source|Comment):", line)
                )
    return ""


_TITLE = re.compile(r'"title":\s*qsTr\("([^"]+)"\)')
_IMAGE2 = re.compile(r'"image2":\s*"qrc:/gcompris/src/activities/([^"]+)"')


def animal_photos(files: dict[str, bytes]) -> list[tuple[str, ImageRef]]:
    """GCompris animal photos with their names, from the explore-animals boards.

    Args:
        files: Output of :func:`read_bundles` over the explore_*_animals bundles.

    Returns:
        ``(name, image)`` pairs, one per animal.
    """
    seen = {}
    for path, data in sorted(files.items()):
        if (
            "animals" not in path.split("/")[0]
            or "/board/" not in path
            or not path.endswith(".qml")
        ):
            continue
        text = data.decode("utf-8", errors="replace")
        for title, image in zip(_TITLE.findall(text), _IMAGE2.findall(text)):
            if image in files and title not in seen:
                key = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
                seen[title] = ImageRef(
                    "gcompris-animals", key, open_bytes(files[image]), photo_credit(files, image)
                )
    return sorted(seen.items())
