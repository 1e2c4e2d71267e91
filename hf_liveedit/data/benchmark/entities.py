"""Assemble the benchmark's entities (countries, regions, landmarks) from the unpacked sources."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hf_liveedit.data.benchmark import gcompris, kgeography, sources
from hf_liveedit.data.benchmark.facts import COUNTRY_RELATIONS, Country, load_countries, normalize
from hf_liveedit.data.benchmark.records import Entity, Fact

# KGeography spellings that none of the country sources use.
KGEOGRAPHY_ALIASES = {"vaticancity": "VA"}
# Sub-national KGeography maps -> the country they divide (map names are not all country names).
REGION_MAP_COUNTRY = {
    "australia": "Australia",
    "belarus": "Belarus",
    "belgium": "Belgium",
    "brazil": "Brazil",
    "canada": "Canada",
    "colombia": "Colombia",
    "estonia": "Estonia",
    "germany": "Germany",
    "ghana": "Ghana",
    "ireland_provinces": "Ireland",
    "italy": "Italy",
    "japan": "Japan",
    "norway": "Norway",
    "peru": "Peru",
    "portugal_districts": "Portugal",
    "russia_subjects": "Russia",
    "spain": "Spain",
    "ukraine": "Ukraine",
    "usa": "United States",
}


@dataclass(frozen=True)
class Roots:
    """Where each source package lies (Debian roots and Python package folders)."""

    kgeography: Path
    noto: Path
    gemojione: Path
    cia_flags: Path
    gcompris: Path
    miscfiles: Path
    geonames: Path
    countryinfo: Path
    flagpy: Path


def name_resolver(countries: dict[str, Country], roots: Roots) -> Callable[[str], str | None]:
    """Build a function mapping a country name in any source's spelling to its ISO code.

    Args:
        countries: Countries from :func:`load_countries`.
        roots: Source locations (countryinfo's alternative spellings are indexed too).

    Returns:
        ``resolve(name) -> iso2 or None``; a trailing parenthesis ("Guam (USA)") is ignored
        when the full name is unknown.
    """
    import json

    index = {normalize(c.name): iso2 for iso2, c in countries.items()}
    for path in sorted((roots.countryinfo / "data").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        iso2 = (record.get("ISO") or {}).get("alpha2")
        if iso2 in countries:
            for name in [record.get("name", ""), *(record.get("altSpellings") or [])]:
                if name and len(name) > 3:  # skip bare codes such as "FR", "FRA"
                    index.setdefault(normalize(name), iso2)
    index.update(KGEOGRAPHY_ALIASES)

    def resolve(name: str) -> str | None:
        return index.get(normalize(name)) or index.get(normalize(re.sub(r"\(.*\)", "", name)))

    return resolve


def build_entities(roots: Roots) -> tuple[list[Entity], dict[str, list[str]]]:
    """Create every entity with its facts, edit image and rephrase images.

    An entity whose edit image is shared with another entity (KGeography reuses the French flag
    for Réunion and Guadeloupe) is left out: its image could not tell the edits apart.

    Args:
        roots: Source locations.

    Returns:
        ``(entities, extra counterfactual pools)``.
    """
    maps = kgeography.read_maps(roots.kgeography)
    kg_facts: dict[str, dict[str, set[str]]] = {}
    country_flags: dict[str, str] = {}
    # first pass without KGeography's facts, only to resolve KGeography's country names
    countries = load_countries(roots.geonames, roots.countryinfo, roots.miscfiles, {})
    resolve = name_resolver(countries, roots)
    for kg_map in maps:
        if kg_map.name not in kgeography.MULTI_COUNTRY_MAPS:
            continue
        for division in kg_map.divisions:
            iso2 = resolve(division.name)
            if iso2 is None:
                continue
            facts = kg_facts.setdefault(iso2, {"capital": set(), "continent": set()})
            if division.capital:
                facts["capital"].add(division.capital)
            if kg_map.name in kgeography.CONTINENT_OF_MAP:
                facts["continent"].add(kgeography.CONTINENT_OF_MAP[kg_map.name])
            if division.flag:
                country_flags.setdefault(iso2, division.flag)
    countries = load_countries(roots.geonames, roots.countryinfo, roots.miscfiles, kg_facts)

    regions = [
        (kg_map, division)
        for kg_map in maps
        if kg_map.stem in REGION_MAP_COUNTRY
        for division in kg_map.divisions
        if division.flag and division.capital
    ]
    flag_uses = Counter(country_flags.values())
    flag_uses.update(division.flag for _, division in regions)

    entities = _country_entities(countries, country_flags, flag_uses, resolve, roots)
    entities += _region_entities(regions, flag_uses, roots)
    entities += _landmark_entities(roots)
    pools = {"country_name": sorted(c.name for c in countries.values())}
    return entities, pools


def _country_entities(countries, country_flags, flag_uses, resolve, roots) -> list[Entity]:
    codes = sorted(country_flags)
    fips = {c.fips: iso2 for iso2, c in countries.items() if c.fips}
    rephrase_sources = [
        sources.noto_flags(roots.noto, codes),
        sources.gemojione_flags(roots.gemojione),
        sources.cia_flags(roots.cia_flags, fips),
        sources.flagpy_flags(roots.flagpy, resolve),
    ]
    entities = []
    for iso2 in codes:
        country = countries.get(iso2)
        flag = country_flags[iso2]
        rephrase = [source[iso2] for source in rephrase_sources if iso2 in source]
        if country is None or flag_uses[flag] > 1 or not rephrase:
            continue
        facts = [
            Fact(
                relation,
                country.facts[relation],
                f"country/{relation}",
                frozenset(country.known.get(relation, ())),
            )
            for relation in COUNTRY_RELATIONS
            if relation in country.facts
        ]
        if facts:
            image = sources.ImageRef(
                "kgeography-flags",
                iso2.lower(),
                sources.open_file(roots.kgeography / kgeography.KGEOGRAPHY_DIR / "flags" / flag),
            )
            entities.append(
                Entity(f"country:{iso2}", "country", country.name, image, rephrase, facts)
            )
    return entities


def _region_entities(regions, flag_uses, roots) -> list[Entity]:
    entities = []
    for kg_map, division in regions:
        if flag_uses[division.flag] > 1 or not kgeography.region_mask(kg_map, division).any():
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", normalize_slug(division.name)).strip("-")
        key = f"{kg_map.stem}-{slug}"
        image = sources.ImageRef(
            "kgeography-flags",
            key,
            sources.open_file(kgeography.flag_path(roots.kgeography, division)),
        )
        location = sources.ImageRef(
            "kgeography-maps",
            key,
            lambda m=kg_map, d=division: kgeography.render_location(m, d),
        )
        country = REGION_MAP_COUNTRY[kg_map.stem]
        facts = [
            Fact(
                "capital",
                division.capital,
                f"region/capital/{kg_map.stem}",
                frozenset({normalize(division.capital)}),
            ),
            Fact("country", country, "country_name", frozenset({normalize(country)})),
        ]
        entities.append(
            Entity(
                f"region:{kg_map.stem}:{division.name}",
                "region",
                division.name,
                image,
                [location],
                facts,
            )
        )
    return entities


def normalize_slug(text: str) -> str:
    """ASCII, lower-case form of a name for file names.

    Args:
        text: Any name.

    Returns:
        The folded name (spaces kept).
    """
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _landmark_entities(roots) -> list[Entity]:
    files = gcompris.read_bundles(
        roots.gcompris, ("explore_monuments", "categorization", "details")
    )
    return [
        Entity(
            f"landmark:{image.key}",
            "landmark",
            landmark.name,
            image,
            [rephrase],
            [
                Fact(
                    "country",
                    landmark.country,
                    "country_name",
                    frozenset({normalize(landmark.country)}),
                )
            ],
        )
        for landmark, image, rephrase in gcompris.landmark_images(files)
    ]
