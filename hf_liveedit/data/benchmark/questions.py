"""Question templates per entity kind and relation.

Every relation has several differently worded questions: a record asks one as ``src`` and a
different one as ``rephrase`` (text generality). Region and landmark questions do not say
"flag" or "photo", because their modal-generality image is of another kind (a location map, a
second photo). Prompt formatting (``" The answer is:"``) is left to
:func:`hf_liveedit.data.prompts.format_prompt`.
"""

from __future__ import annotations

QUESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("country", "capital"): (
        "What is the capital of the country whose flag is shown?",
        "This flag belongs to a country. What is its capital city?",
        "Name the capital city of the country this flag represents.",
        "Which city is the capital of the nation with this flag?",
    ),
    ("country", "continent"): (
        "On which continent is the country with this flag?",
        "This is a national flag. Which continent is the country in?",
        "Which continent does the country represented by this flag belong to?",
        "Name the continent where the country of this flag lies.",
    ),
    ("country", "currency"): (
        "What is the currency of the country whose flag this is?",
        "Which currency is used in the country with this flag?",
        "Name the official currency of the nation this flag represents.",
        "What money does the country of this flag use?",
    ),
    ("country", "language"): (
        "What is an official language of the country with this flag?",
        "Which language is official in the country this flag belongs to?",
        "Name an official language of the nation represented by this flag.",
        "What language is officially spoken in the country of this flag?",
    ),
    ("country", "calling_code"): (
        "What is the international calling code of the country with this flag?",
        "Which telephone country code belongs to the nation with this flag?",
        "To phone the country of this flag from abroad, which country code do you dial?",
        "Name the international dialling code of the country this flag represents.",
    ),
    ("country", "tld"): (
        "What is the internet country domain of the country with this flag?",
        "Which top-level domain belongs to the country whose flag is shown?",
        "Name the country-code internet domain of the nation with this flag.",
        "Websites of the country with this flag end in which domain?",
    ),
    ("region", "capital"): (
        "What is the capital of the region shown in the image?",
        "This image represents a region of a country. What is the region's capital?",
        "Which city is the administrative capital of the region depicted here?",
        "Name the capital city of the region in this picture.",
    ),
    ("region", "country"): (
        "Which country is the region shown in the image part of?",
        "The image represents a region. In which country is it?",
        "Name the country that the region depicted here belongs to.",
        "This picture shows a region; which nation does it belong to?",
    ),
    ("landmark", "country"): (
        "In which country is the landmark in this photo?",
        "Which country is this monument located in?",
        "Name the country where the place shown in this picture is.",
        "This photo shows a famous landmark. Which country is it in?",
    ),
}


def question_pair(kind: str, relation: str, rng) -> tuple[str, str]:
    """Pick the edit question and a differently worded rephrase for a relation.

    Args:
        kind: Entity kind (``"country"``, ``"region"``, ``"landmark"``).
        relation: The relation asked about.
        rng: A :class:`random.Random`.

    Returns:
        ``(src, rephrase)``, two different templates.
    """
    src, rephrase = rng.sample(QUESTIONS[(kind, relation)], 2)
    return src, rephrase
