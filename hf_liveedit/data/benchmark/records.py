"""Turn entities and their facts into MMEdit records: splits, counterfactual targets, locality.

Everything random is drawn from :class:`random.Random` instances seeded by the build seed and
the record's own key, so a record does not change when other records are added or removed.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from hf_liveedit.data.benchmark.facts import normalize
from hf_liveedit.data.benchmark.locality import ImageQA, TextQA
from hf_liveedit.data.benchmark.questions import question_pair
from hf_liveedit.data.benchmark.sources import ImageRef


@dataclass(frozen=True)
class Fact:
    """A true fact and what a counterfactual target must avoid."""

    relation: str
    answer: str
    pool: str  # name of the candidate pool counterfactual targets are drawn from
    known: frozenset[str] = frozenset()  # normalized values any source states (all true)


@dataclass
class Entity:
    """Something shown in images, with facts about it."""

    key: str  # "country:FR", "region:usa:Texas", "landmark:the-eiffel-tower"
    kind: str
    name: str
    image: ImageRef
    rephrase_images: list[ImageRef]  # from sources never used for edit images
    facts: list[Fact] = field(default_factory=list)


def record_rng(seed: int, *parts: str) -> random.Random:
    """A random generator that depends only on the seed and the given key parts.

    Args:
        seed: The build seed.
        *parts: Strings identifying what is drawn (entity key, relation, purpose).

    Returns:
        A seeded :class:`random.Random`.
    """
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def counterfactual(fact: Fact, candidates: Sequence[str], rng: random.Random) -> str:
    """Choose a false answer of the same relation (e.g. another country's capital).

    Args:
        fact: The true fact.
        candidates: Answers the same relation has for other entities.
        rng: Random generator for the choice.

    Returns:
        A candidate that differs from the true answer and from every value a source states.

    Raises:
        ValueError: if no candidate is false for this entity.
    """
    avoid = set(fact.known) | {normalize(fact.answer)}
    options = sorted({c for c in candidates if normalize(c) not in avoid})
    if not options:
        raise ValueError(f"no counterfactual candidate for {fact.relation}={fact.answer!r}")
    return rng.choice(options)


def split_entities(entities: Sequence[Entity], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each entity to ``"train"`` or ``"test"``; all records of an entity share a split.

    Entities of each kind are ordered by a seeded hash and the first ``test_fraction`` of them
    (rounded up) go to test, so each kind is represented in both splits.

    Args:
        entities: All entities.
        test_fraction: Share of each kind's entities that go to test.
        seed: The build seed.

    Returns:
        ``{entity key: split}``.
    """
    by_kind: dict[str, list[str]] = {}
    for entity in entities:
        by_kind.setdefault(entity.kind, []).append(entity.key)
    split = {}
    for keys in by_kind.values():
        ordered = sorted(
            set(keys), key=lambda k: hashlib.sha256(f"{seed}\x1f{k}".encode()).hexdigest()
        )
        n_test = math.ceil(len(ordered) * test_fraction)
        for rank, key in enumerate(ordered):
            split[key] = "test" if rank < n_test else "train"
    return split


def candidate_pools(entities: Sequence[Entity]) -> dict[str, list[str]]:
    """Collect, per pool name, every answer stated in it.

    Args:
        entities: All entities.

    Returns:
        ``{pool: sorted distinct answers}``.
    """
    pools: dict[str, set[str]] = {}
    for entity in entities:
        for fact in entity.facts:
            pools.setdefault(fact.pool, set()).add(fact.answer)
    return {name: sorted(values) for name, values in pools.items()}


def make_records(
    entities: Sequence[Entity],
    text_loc: Sequence[TextQA],
    image_loc: Sequence[ImageQA],
    *,
    seed: int,
    test_fraction: float,
    extra_pools: dict[str, Sequence[str]] | None = None,
) -> tuple[list[dict[str, str]], list[ImageRef]]:
    """Build one MMEdit record per (entity, fact).

    Args:
        entities: Entities with their facts and images.
        text_loc: Text-locality questions to draw ``loc``/``loc_ans`` from.
        image_loc: Image-locality questions to draw ``m_loc``... from.
        seed: The build seed.
        test_fraction: Share of entities (per kind) in the test split.
        extra_pools: Additional counterfactual candidates per pool name.

    Returns:
        ``(records, images)``: the records (``pred`` empty) and every image they reference.
    """
    splits = split_entities(entities, test_fraction, seed)
    pools = candidate_pools(entities)
    for name, values in (extra_pools or {}).items():
        pools[name] = sorted(set(pools.get(name, [])) | set(values))
    records, images = [], {}
    for entity in entities:
        for fact in entity.facts:
            rng = record_rng(seed, entity.key, fact.relation)
            src, rephrase = question_pair(entity.kind, fact.relation, rng)
            rephrase_image = rng.choice(entity.rephrase_images)
            loc = rng.choice(text_loc)
            m_loc = rng.choice(image_loc)
            for ref in (entity.image, rephrase_image, m_loc.image):
                images[ref.relative_path] = ref
            records.append(
                {
                    "src": src,
                    "rephrase": rephrase,
                    "pred": "",
                    "alt": counterfactual(fact, pools[fact.pool], rng),
                    "image": entity.image.relative_path,
                    "image_rephrase": rephrase_image.relative_path,
                    "loc": loc.question,
                    "loc_ans": loc.answer,
                    "m_loc": m_loc.image.relative_path,
                    "m_loc_q": m_loc.question,
                    "m_loc_a": m_loc.answer,
                    "task": "vqa",
                    "source": "hf-liveedit-benchmark",
                    "split": splits[entity.key],
                    "entity": entity.name,
                    "relation": f"{entity.kind}/{fact.relation}",
                    "answer": fact.answer,
                    "entity_key": entity.key,
                    "image_source": entity.image.source,
                    "image_rephrase_source": rephrase_image.source,
                }
            )
    return records, list(images.values())
