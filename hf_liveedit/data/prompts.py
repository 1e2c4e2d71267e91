"""Prompt formatting for editing data, kept in one place.

The MMEdit authors feed E-VQA questions as ``"{src} The answer is:"`` and E-IC caption prompts
(``"a photo of"``) as they are. Every loader, the benchmark builder and the ``pred`` filling step
go through :func:`format_prompt`, so a record is always asked the same way.
"""

from __future__ import annotations

# task -> template applied to a record's `src` / `rephrase` / `m_loc_q`
PROMPT_TEMPLATES: dict[str, str] = {
    "vqa": "{question} The answer is:",
    "caption": "{question}",
}

# MMEdit marks its text-locality questions (Natural Questions) with this prefix.
LOC_PREFIX = "nq question: "


def format_prompt(question: str, task: str = "vqa") -> str:
    """Turn a record's question into the prompt the model sees.

    Args:
        question: The question or caption prefix (``src``, ``rephrase`` or ``m_loc_q``).
        task: ``"vqa"`` (E-VQA, VLKEB, the packaged benchmark) or ``"caption"`` (E-IC).

    Returns:
        The prompt text.
    """
    try:
        template = PROMPT_TEMPLATES[task]
    except KeyError:
        known = sorted(PROMPT_TEMPLATES)
        raise ValueError(f"unknown task {task!r}; expected one of {known}") from None
    return template.format(question=question.strip())


def with_loc_prefix(question: str) -> str:
    """Return a text-locality question with MMEdit's ``"nq question: "`` prefix (added once).

    Args:
        question: A text-only question, prefixed or not.

    Returns:
        The prefixed question.
    """
    return question if question.startswith(LOC_PREFIX) else LOC_PREFIX + question
