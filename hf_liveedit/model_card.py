"""Model cards for saved LiveEdit adapters, rendered from ``model_card_template.md``."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .config import LiveEditConfig
from .repository import EditRecord

_PREVIEW_EDITS = 5


def render_model_card(
    config: LiveEditConfig,
    fingerprint: dict[str, Any],
    records: list[EditRecord],
    metrics: dict[str, float] | None = None,
    repo_id: str | None = None,
) -> str:
    """Fill the model-card template.

    Args:
        config: the adapter's config.
        fingerprint: the base model's fingerprint.
        records: stored edits (the first few are listed).
        metrics: editing metrics to report, if measured.
        repo_id: Hub id or local path used in the usage snippet.
    """
    template = resources.files("hf_liveedit").joinpath("model_card_template.md").read_text()
    rows = "\n".join(f"| `{key}` | `{value}` |" for key, value in config.to_dict().items())
    preview = "".join(
        f"\n- `{record.id}`: {record.prompt!r} -> {record.target!r}"
        for record in records[:_PREVIEW_EDITS]
    )
    if len(records) > _PREVIEW_EDITS:
        preview += f"\n- ... and {len(records) - _PREVIEW_EDITS} more (see `edits.json`)"
    metric_text = (
        "\n".join(f"- {name}: {value:.2f}" for name, value in metrics.items())
        if metrics
        else "Not measured for this repository yet."
    )
    return template.format(
        base_model=config.base_model_name_or_path or "unknown",
        repo_id=repo_id or "path/to/this/adapter",
        num_edits=len(records),
        config_rows=rows,
        fingerprint=json.dumps(fingerprint, sort_keys=True),
        edit_preview=preview,
        metrics=metric_text,
    )
