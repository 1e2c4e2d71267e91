"""Model cards of saved LiveEdit adapters and expert repositories (``huggingface_hub`` cards).

The metadata (license, ``pipeline_tag``, ``library_name``, ``base_model`` and its
``base_model:adapter:`` tag) is built with :class:`huggingface_hub.ModelCardData`; the adapter
card's text comes from ``model_card_template.md``. Only Hub ids are written: a base model
loaded from a local folder is not named (the card asks for its id), and the usage snippet shows
the Hub repository, or a placeholder for a local save, never a path of this machine.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .config import LiveEditConfig, hub_model_id
from .repository import EditRecord

__all__ = ["adapter_card", "experts_card"]

_PREVIEW_EDITS = 5
_TAGS = ["liveedit", "knowledge-editing", "vision-language"]
_UNNAMED_BASE = (
    "\n\nThe base model is not named here: only Hub ids are recorded, and it was not loaded "
    "from one. If it is on the Hub, add `base_model: <its id>` to this card's metadata (or set "
    "`liveedit_config.base_model_name_or_path` to its id before saving)."
)


def _card_data(
    config: LiveEditConfig, license: str | None, extra_tags: list[str]
) -> tuple[ModelCardData, str | None]:
    """Card metadata and the base model's Hub id (None when unknown or a local path)."""
    base = hub_model_id(config.base_model_name_or_path)
    tags = [*_TAGS, *extra_tags]
    extra: dict[str, Any] = {}
    if base is not None:
        tags.append(f"base_model:adapter:{base}")
        extra["base_model_relation"] = "adapter"
    data = ModelCardData(
        library_name="hf-liveedit",
        license=license,
        pipeline_tag="image-text-to-text",
        base_model=base,
        tags=tags,
        **extra,
    )
    return data, base


def _card(data: ModelCardData, text: str) -> ModelCard:
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text.strip()}\n")


def _edit_preview(records: list[EditRecord]) -> str:
    preview = "".join(
        f"\n- `{record.id}`: {record.prompt!r} -> {record.target!r}"
        for record in records[:_PREVIEW_EDITS]
    )
    if len(records) > _PREVIEW_EDITS:
        preview += f"\n- ... and {len(records) - _PREVIEW_EDITS} more (see `edits.json`)"
    return preview


def adapter_card(
    config: LiveEditConfig,
    fingerprint: dict[str, Any],
    records: list[EditRecord],
    metrics: dict[str, float] | None = None,
    repo_id: str | None = None,
    license: str | None = "apache-2.0",
) -> ModelCard:
    """The model card of a saved adapter (generator plus experts).

    Args:
        config: the adapter's config.
        fingerprint: the base model's fingerprint (and weights' SHA-256).
        records: stored edits (the first few are listed).
        metrics: editing metrics to report, if measured.
        repo_id: the Hub repository, for the usage snippet (a placeholder when None).
        license: the adapter's license (its own weights; the base model keeps its own).
    """
    data, base = _card_data(config, license, [])
    rows = {**config.to_dict(), "base_model_name_or_path": base}
    metric_text = (
        "\n".join(f"- {name}: {value:.2f}" for name, value in metrics.items())
        if metrics
        else "Not measured for this repository yet."
    )
    template = resources.files("hf_liveedit").joinpath("model_card_template.md").read_text()
    text = template.format(
        base_model_title=f" for `{base}`" if base else "",
        base_model_note="" if base else _UNNAMED_BASE,
        repo_id=repo_id or "path/to/this/adapter",
        num_edits=len(records),
        config_rows="\n".join(f"| `{key}` | `{value}` |" for key, value in rows.items()),
        fingerprint=json.dumps(fingerprint, sort_keys=True),
        edit_preview=_edit_preview(records),
        metrics=metric_text,
    )
    return _card(data, text)


def experts_card(
    config: LiveEditConfig,
    fingerprint: dict[str, Any],
    records: list[EditRecord],
    generator_sha256: str,
    repo_id: str | None = None,
    license: str | None = "apache-2.0",
) -> ModelCard:
    """The small card of an experts-only repository (``experts.safetensors`` + ``edits.json``).

    Args:
        config: the config of the adapter that made the experts.
        fingerprint: the base model's fingerprint (and weights' SHA-256).
        records: the stored edits (the first few are listed).
        generator_sha256: SHA-256 of the generator the experts are only valid with.
        repo_id: the Hub repository, for the usage snippet (a placeholder when None).
        license: the repository's license.
    """
    data, base = _card_data(config, license, ["liveedit-experts"])
    text = f"""
# LiveEdit edits{f" for `{base}`" if base else ""}

{len(records)} edit(s) stored as LiveEdit experts (`experts.safetensors`, `edits.json`): no
generator and no base-model weights. They only apply with the generator whose weights hash to
`{generator_sha256}`, on the base model with fingerprint `{json.dumps(fingerprint, sort_keys=True)}`
(both checked when loading).{"" if base else _UNNAMED_BASE}

```python
from hf_liveedit import LiveEditModel

model = LiveEditModel.from_pretrained(base_model, "<the generator's repo>", processor=processor)
model.load_experts("{repo_id or "path/to/these/experts"}")
```

## Edits
{_edit_preview(records)}
"""
    return _card(data, text)
