"""Locality samples: real questions and images unrelated to any edit.

Text locality (``loc``/``loc_ans``) uses element facts from ``dict-elements`` and WordNet noun
definitions from ``wordnet-base``; multimodal locality (``m_loc``...) uses Tux Paint stamps with
their one-line descriptions and GCompris animal photos. None of them is about a country, a region
or a landmark, so an edit should leave the model's answers to them unchanged.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from hf_liveedit.data.benchmark.sources import ImageRef, open_file
from hf_liveedit.data.prompts import with_loc_prefix

# WordNet lexicographer files of concrete, place-free nouns (animal, artifact, food, object,
# plant, substance): nothing that could be about a country or a capital.
WORDNET_LEXFILES = {"05", "06", "13", "17", "20", "27"}
# Tux Paint stamp folders left out of locality images: flags, monuments and symbols.
TUXPAINT_EXCLUDED = ("town/flags", "town/monuments", "symbols")


@dataclass(frozen=True)
class TextQA:
    """A text-only question (already ``"nq question: "``-prefixed) and its answer."""

    question: str
    answer: str
    source: str


@dataclass(frozen=True)
class ImageQA:
    """An image with a question about it and the answer."""

    image: ImageRef
    question: str
    answer: str


def element_questions(root: Path) -> list[TextQA]:
    """Questions about chemical elements (symbol, atomic number) from ``dict-elements``.

    Args:
        root: Root of the unpacked ``dict-elements`` package.

    Returns:
        Three questions per element.
    """
    with gzip.open(root / "usr/share/dictd/elements.dict.dz", "rt", encoding="latin-1") as handle:
        text = handle.read()
    entries = re.findall(r"^([a-z]+)\nSymbol: (\w+)\nAtomic number: (\d+)", text, re.MULTILINE)
    out = []
    for name, symbol, number in entries:
        if int(number) > 103:  # superheavy elements were renamed after this list was written
            continue
        out += [
            TextQA(with_loc_prefix(f"what is the chemical symbol of {name}"), symbol, "elements"),
            TextQA(with_loc_prefix(f"what is the atomic number of {name}"), number, "elements"),
            TextQA(
                with_loc_prefix(f"which chemical element has the symbol {symbol}"), name, "elements"
            ),
        ]
    return out


def wordnet_questions(root: Path, max_words: int = 14) -> list[TextQA]:
    """ "What is a X" questions answered by the WordNet gloss of X's most frequent sense.

    Args:
        root: Root of the unpacked ``wordnet-base`` package.
        max_words: Longest definition kept.

    Returns:
        One question per common concrete noun.
    """
    base = root / "usr/share/wordnet"
    first_sense = {}
    with open(base / "index.noun", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):
                continue
            parts = line.split()
            lemma, pointer_count = parts[0], int(parts[3])
            tagged = int(parts[5 + pointer_count])
            if lemma.isalpha() and lemma.islower() and tagged >= 2:
                first_sense[parts[6 + pointer_count]] = lemma
    out = []
    with open(base / "data.noun", encoding="utf-8") as handle:
        for line in handle:
            offset, lexfile = line[:8], line[9:11]
            if offset not in first_sense or lexfile not in WORDNET_LEXFILES or "|" not in line:
                continue
            gloss = line.split("|", 1)[1].split(";")[0].strip()
            if 2 <= len(gloss.split()) <= max_words and "(" not in gloss:
                lemma = first_sense[offset]
                article = "an" if lemma[0] in "aeiou" else "a"
                out.append(TextQA(with_loc_prefix(f"what is {article} {lemma}"), gloss, "wordnet"))
    return out


def tuxpaint_questions(root: Path, max_words: int = 5) -> list[ImageQA]:
    """Tux Paint stamps asked "What is shown in this picture?", answered by their description.

    Args:
        root: Root of the unpacked ``tuxpaint-stamps-default`` package.
        max_words: Longest description kept (long ones are sentences, not names).

    Returns:
        One question per PNG stamp with a short English description.
    """
    base = root / "usr/share/tuxpaint/stamps"
    out = []
    for text in sorted(base.rglob("*.txt")):
        relative = text.relative_to(base).as_posix()
        png = text.with_suffix(".png")
        if relative.startswith(TUXPAINT_EXCLUDED) or not png.is_file():
            continue
        with open(text, encoding="utf-8", errors="replace") as handle:
            description = handle.readline().strip().rstrip(".!").strip()
        plain = re.fullmatch(r"[A-Za-z' -]+", description)
        if plain and len(description.split()) <= max_words:
            key = relative[: -len(".txt")].replace("/", "-")
            answer = description[0].lower() + description[1:]
            out.append(
                ImageQA(
                    ImageRef("tuxpaint", key, open_file(png)),
                    "What is shown in this picture?",
                    answer,
                )
            )
    return out


def animal_questions(animals: list[tuple[str, ImageRef]]) -> list[ImageQA]:
    """GCompris animal photos asked "What animal is this?".

    Args:
        animals: ``(name, image)`` pairs from :func:`hf_liveedit.data.benchmark.gcompris.animal_photos`.

    Returns:
        One question per animal.
    """
    return [ImageQA(image, "What animal is this?", name.lower()) for name, image in animals]
