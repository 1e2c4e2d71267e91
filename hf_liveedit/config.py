"""Configuration of a LiveEdit adapter."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CONFIG_NAME = "adapter_config.json"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LiveEditConfig:
    """Hyper-parameters of a LiveEdit adapter (generator, feature extractors and routing).

    Defaults follow the paper (d_m = 1024, r = 4, k = 4, 8 heads). Like PEFT configs, it
    round-trips through JSON (:meth:`to_dict` / :meth:`from_dict`, :meth:`save_pretrained` /
    :meth:`from_pretrained`).
    """

    edit_layer: int | None = field(
        default=None,
        metadata={
            "help": "Index l_e of the decoder layer whose output is edited. None picks about 2/3 "
            "of the language model's depth."
        },
    )
    module_dim: int = field(
        default=1024, metadata={"help": "d_m: width of the generator's and extractors' attention."}
    )
    rank: int = field(
        default=4, metadata={"help": "r: rank of each low-rank expert (U, V in R^{r x d})."}
    )
    num_queries: int = field(
        default=4, metadata={"help": "k: number of learned queries of each routing feature."}
    )
    num_heads: int = field(default=8, metadata={"help": "Heads of every cross-attention."})
    expert_scale: float | None = field(
        default=None,
        metadata={"help": "Scale c applied to U and V. None uses the authors' 1 / (5 sqrt(r))."},
    )
    num_sentinel_tokens: int | None = field(
        default=None,
        metadata={
            "help": "N_v: rows of the vision sentinel. None uses the backbone's image token count."
        },
    )
    edit_text_only_inputs: bool = field(
        default=False,
        metadata={
            "help": "Route inputs without an image too (the sentinel stands in for the image "
            "tokens). False is the paper's behaviour: text-only inputs are never edited."
        },
    )
    soft_routing_visual_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight w of the visual margin in the soft-routing score: s_e = sim(psi_in, "
            "psi_e) + w (sim(phi_in, phi_e) - sim(phi_in, phi_sentinel)). 0 is the paper's "
            "score, which sees only the prompt, so every kept edit of one relation gets the same "
            "weight; w > 0 (with a router trained for it, see hf_liveedit.trainers.routing_stage) "
            "gives the weight to the edit whose image matches."
        },
    )
    expert_dtype: str = field(
        default="float32",
        metadata={"help": "Storage dtype of the expert repository: float32, float16 or bfloat16."},
    )
    module_dtype: str = field(
        default="float32",
        metadata={"help": "Dtype of the trainable LiveEdit modules (generator, extractors)."},
    )
    backend: str = field(
        default="auto",
        metadata={
            "help": "Routing/fusion implementation: 'auto' (Triton kernels for CUDA tensors, the "
            "PyTorch reference otherwise; env HF_LIVEEDIT_BACKEND overrides), 'torch' or 'triton'."
        },
    )
    base_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Name or path of the base VLLM (filled in automatically)."}
    )

    def __post_init__(self) -> None:
        for name in ("module_dim", "rank", "num_queries", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.module_dim % self.num_heads:
            raise ValueError(
                f"module_dim ({self.module_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if (
            not math.isfinite(self.soft_routing_visual_weight)
            or self.soft_routing_visual_weight < 0
        ):
            raise ValueError(
                "soft_routing_visual_weight must be a finite number >= 0, got "
                f"{self.soft_routing_visual_weight!r}"
            )
        if self.backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {self.backend!r}")
        for name in ("expert_dtype", "module_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(
                    f"{name} must be one of {sorted(_DTYPES)}, got {getattr(self, name)!r}"
                )

    @property
    def scale(self) -> float:
        """The scale ``c`` applied to the generated ``U`` and ``V``."""
        return (
            self.expert_scale if self.expert_scale is not None else 1.0 / (5 * math.sqrt(self.rank))
        )

    @property
    def torch_expert_dtype(self) -> torch.dtype:
        """``expert_dtype`` as a ``torch.dtype``."""
        return _DTYPES[self.expert_dtype]

    @property
    def torch_module_dtype(self) -> torch.dtype:
        """``module_dtype`` as a ``torch.dtype``."""
        return _DTYPES[self.module_dtype]

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveEditConfig:
        """Build a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown LiveEditConfig fields: {unknown}")
        return cls(**data)

    def save_pretrained(self, directory: str | Path, **extra: Any) -> None:
        """Write ``adapter_config.json`` (plus ``extra`` top-level keys) into ``directory``."""
        payload = {"peft_type": "LIVEEDIT", **self.to_dict(), **extra}
        Path(directory, CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> tuple[LiveEditConfig, dict[str, Any]]:
        """Read ``adapter_config.json``; returns the config and the extra top-level keys."""
        payload = json.loads(Path(directory, CONFIG_NAME).read_text())
        payload.pop("peft_type", None)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {key: payload.pop(key) for key in list(payload) if key not in known}
        return cls.from_dict(payload), extra
