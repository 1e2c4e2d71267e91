"""LiveEdit behind the :class:`Editor` interface: an edit is one :meth:`LiveEditModel.add_edit`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature

from hf_liveedit.evaluation.cases import EditCase, Sample
from hf_liveedit.evaluation.editors.base import Editor
from hf_liveedit.evaluation.metrics import METRICS
from hf_liveedit.evaluation.scoring import LOCALITY
from hf_liveedit.model import LiveEditModel


class LiveEditEditor(Editor):
    """Edits with LiveEdit: each edit stores one generated expert; no weight changes.

    Reset clears the expert repository (the generator stays). Scoring calls the
    :class:`~hf_liveedit.LiveEditModel` itself with ``labels`` in the inputs, because its hook
    excludes answer tokens from routing by them; the full logits are computed and the answer
    window is sliced afterwards.

    With ``diagnostics=True`` each chunk also reports how routing behaved (see
    :meth:`diagnostics`), at the cost of one more prompt-only forward pass per sample.

    With the adapter's ``verify_edits`` on, the editor is named "LiveEdit, verified" and the
    diagnostics also report the share of edits that took and their refinement steps.

    Args:
        liveedit: a LiveEdit-wrapped model (a trained generator, e.g. from
            :meth:`from_pretrained`).
        diagnostics: measure routing after each chunk.
    """

    def __init__(self, liveedit: LiveEditModel, diagnostics: bool = False):
        super().__init__(liveedit.base_model, liveedit.processor)
        self.liveedit = liveedit
        self.with_diagnostics = diagnostics
        self.name = "LiveEdit, verified" if liveedit.liveedit_config.verify_edits else "LiveEdit"

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        processor: Any,
        adapter_dir: str | Path,
        diagnostics: bool = False,
        verify_edits: bool | None = None,
    ) -> LiveEditEditor:
        """Load a trained LiveEdit adapter (generator only, no stored edits) onto ``model``.

        Args:
            verify_edits: turn verified edits on or off (None: as the adapter's config says).
        """
        liveedit = LiveEditModel.from_pretrained(
            model, adapter_dir, processor=processor, load_experts=False
        )
        if verify_edits is not None:
            liveedit.liveedit_config.verify_edits = verify_edits
        return cls(liveedit, diagnostics)

    def edit(self, sample: Sample) -> None:
        self.liveedit.add_edit(sample.image, sample.prompt, sample.target)

    def reset(self) -> None:
        self.liveedit.clear_edits()

    def close(self) -> None:
        self.reset()
        self.liveedit.unload()

    @torch.no_grad()
    def logits(self, inputs: BatchFeature, keep: int) -> torch.Tensor:
        return self.liveedit(**inputs, use_cache=False).logits[:, -keep:]

    @torch.no_grad()
    def generate(self, inputs: BatchFeature, max_new_tokens: int) -> torch.Tensor:
        output = self.liveedit.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        return output[:, inputs["input_ids"].shape[1] :]

    @torch.no_grad()
    def routing_weights(self, samples: Sequence[Sample], batch_size: int = 16) -> torch.Tensor:
        """``[S, N]`` routing weights of each sample's prompt over the stored experts.

        Zero where the hard filter drops an expert; routing never sees the answer, so prompt-only
        inputs route exactly as at scoring time.
        """
        rows = []
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            images = None if batch[0].image is None else [sample.image for sample in batch]
            inputs = self.build_inputs(images, [sample.prompt for sample in batch])
            with self.liveedit.record_routing() as routing:
                self.liveedit(**inputs, use_cache=False, logits_to_keep=1)
            rows.append(routing[-1].float())
        return torch.cat(rows)

    def diagnostics(self, cases: Sequence[EditCase], edited: Sequence[int]) -> dict | None:
        """Routing of the chunk's samples over its experts (expert ``k`` = ``edited[k]``).

        For Rel / T-Gen / M-Gen samples: ``recall`` (the record's own expert passes the hard
        filter), ``precision`` (own expert / experts kept, over samples that keep any),
        ``own_weight`` and ``other_weight`` (soft weight on the own expert / on the others),
        ``kept`` (experts kept), and for M-Gen also per picture source (``m_gen_by_source``:
        count, recall, own weight). For T-Loc / M-Loc / N-Loc samples (which should keep none; an
        N-Loc neighbour is never edited in the chunk): ``any_kept``, ``weight`` (total weight the
        chunk's experts get) and ``kept``. Means over samples, keyed ``{kind}_{stat}``.
        """
        if not self.with_diagnostics or len(self.liveedit.edits) != len(edited):
            return None
        expert = {index: position for position, index in enumerate(edited)}
        out: dict[str, float] = {}
        for kind in METRICS:
            present = [case for case in cases if case.sample(kind) is not None]
            if not present:
                continue
            weights = self.routing_weights([case.sample(kind) for case in present])
            kept = weights > 0
            if kind in LOCALITY:
                stats = {
                    "any_kept": kept.any(dim=1).float(),
                    "weight": weights.sum(dim=1),
                    "kept": kept.sum(dim=1).float(),
                }
            else:
                own = torch.tensor([expert[case.index] for case in present])
                rows = torch.arange(len(present))
                own_kept = kept[rows, own].float()
                some = kept.any(dim=1)
                stats = {
                    "recall": own_kept,
                    "precision": (own_kept / kept.sum(dim=1).clamp(min=1))[some],
                    "own_weight": weights[rows, own],
                    "other_weight": weights.sum(dim=1) - weights[rows, own],
                    "kept": kept.sum(dim=1).float(),
                }
            for name, values in stats.items():
                if len(values):
                    out[f"{kind}_{name}"] = float(values.mean())
            if kind == "m_gen":
                out["m_gen_by_source"] = _by_source(present, stats)
        records = self.liveedit.edits
        if records and records[0].took is not None:
            out["edit_took"] = sum(record.took for record in records) / len(records)
            out["edit_refine_steps"] = sum(r.refine_steps for r in records) / len(records)
        return out


def _by_source(cases: Sequence[EditCase], stats: dict[str, torch.Tensor]) -> dict[str, dict]:
    """M-Gen routing per picture source: ``{source: {"count", "recall", "own_weight"}}``."""
    groups: dict[str, list[int]] = {}
    for row, case in enumerate(cases):
        groups.setdefault(case.m_gen_source or "unknown", []).append(row)
    return {
        source: {
            "count": len(rows),
            "recall": float(stats["recall"][rows].mean()),
            "own_weight": float(stats["own_weight"][rows].mean()),
        }
        for source, rows in sorted(groups.items())
    }
