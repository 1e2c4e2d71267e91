"""Configuration of a LiveEdit adapter."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .persistence import check_format_version, read_json, write_json

#: The configuration file of an adapter folder. Not PEFT's ``adapter_config.json``: PEFT-aware
#: tools (``PeftConfig``, ``PeftModel``, transformers' ``load_adapter`` and ``from_pretrained``)
#: take a folder holding that name for a PEFT adapter and fail on LiveEdit's.
CONFIG_NAME = "liveedit_config.json"
#: The name earlier versions wrote (with ``"peft_type": "LIVEEDIT"``); read, never written.
LEGACY_CONFIG_NAME = "adapter_config.json"
CONFIG_NAMES = (CONFIG_NAME, LEGACY_CONFIG_NAME)
PEFT_TYPE = "LIVEEDIT"
#: Values of ``LiveEditConfig.hard_routing``.
HARD_ROUTING = ("sentinel", "image_key")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check_real(name: str, value: Any) -> None:
    """Refuse a non-number (bool included) or a non-finite one: NaN/inf would reach the logits."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


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
    hard_routing: str = field(
        default="sentinel",
        metadata={
            "help": "How the hard filter decides which experts an input keeps. 'sentinel' is the "
            "paper's: sim(phi_in, phi_e) > sim(phi_in, phi_sentinel) with learned, prompt-guided "
            "features. 'image_key' (beyond the paper, see docs/routing.md): keep iff the cosine "
            "of the input's and the edit's image keys (a fitted fingerprint of the image tokens "
            "at layer l_e) exceeds image_key_threshold: an edit's own picture passes in any "
            "phrasing, other pictures (neighbouring entities) do not; other renderings of the "
            "entity rarely do either."
        },
    )
    image_key_positions: int = field(
        default=16,
        metadata={
            "help": "With hard_routing='image_key': segments G the image tokens are pooled into "
            "(num_queries * module_dim must be divisible by it)."
        },
    )
    image_key_threshold: float = field(
        default=0.95,
        metadata={
            "help": "With hard_routing='image_key': cosine an input's image key must exceed to "
            "keep an edit (hf-liveedit train-router picks it on held-out training entities)."
        },
    )
    verify_edits: bool = field(
        default=False,
        metadata={
            "help": "Verified edits (beyond the paper): after add_edit/add_edits make an edit's "
            "expert, check the greedy answer on the edit input and, if it is not the target, "
            "refine only that expert's U and V (base model and generator frozen) for up to "
            "refine_steps Adam steps until it is. Each edit records whether it took and the steps "
            "it needed. Off by default: the paper's behaviour and cost (one partial forward per "
            "edit); on, an edit costs up to refine_steps + 1 forward and backward passes."
        },
    )
    refine_steps: int = field(
        default=10, metadata={"help": "Most refinement steps per edit when verify_edits is on."}
    )
    refine_lr: float = field(
        default=1e-2, metadata={"help": "Adam learning rate of the refinement of U and V."}
    )
    refine_min_probability: float = field(
        default=0.0,
        metadata={
            "help": "With verify_edits: keep refining an edit that took until every token of its "
            "target has at least this probability on the edit input (within refine_steps), a "
            "margin so that the edit also holds for rephrasings; whether it took is still the "
            "greedy answer. 0: stop as soon as the greedy answer is the target."
        },
    )
    refine_routing_margin: float | None = field(
        default=1.0,
        metadata={
            "help": "With verify_edits: when the hard filter drops a new edit's expert for its "
            "own edit input, move that edit's stored visual key phi_e the least distance that "
            "makes its own input pass with this margin (sim(phi_in, phi_e) - sim(phi_in, "
            "phi_sentinel) >= margin; 1.0 is the margin the learned router was trained with). "
            "None: never move keys (then such an edit cannot take). Only with "
            "hard_routing='sentinel': image keys are never moved."
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
        default=None,
        metadata={
            "help": "Hub id of the base VLLM (filled in automatically; a local path is not saved)."
        },
    )
    # compare=False: a mode, not a hyper-parameter (the same adapter loaded for training or for
    # inference is the same adapter)
    inference_mode: bool = field(
        default=False,
        compare=False,
        metadata={
            "help": "Whether the adapter is used for inference only (its modules frozen), as in "
            "PEFT: from_pretrained sets it to `not is_trainable`; saved for information."
        },
    )

    def __post_init__(self) -> None:
        """Refuse a bad value here, naming its field, rather than deep inside the model."""
        for name, minimum in (
            ("module_dim", 1),
            ("rank", 1),
            ("num_queries", 1),
            ("num_heads", 1),
            ("num_sentinel_tokens", 1),
            ("edit_layer", 0),  # the upper bound depends on the model (get_liveedit_model)
            ("refine_steps", 0),
            ("image_key_positions", 1),
        ):
            value = getattr(self, name)
            if value is None and name in ("num_sentinel_tokens", "edit_layer"):
                continue  # filled in from the backbone
            # bool is an int to Python; 8.0 would reach nn.Linear and fail there
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {value!r}")
            setattr(self, name, value := int(value))  # e.g. numpy ints, for JSON
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value}")
        if self.module_dim % self.num_heads:
            raise ValueError(
                f"module_dim ({self.module_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.expert_scale is not None:
            _check_real("expert_scale", self.expert_scale)
            if not self.expert_scale > 0:  # 0 would make every expert a no-op
                raise ValueError(f"expert_scale must be positive, got {self.expert_scale!r}")
        _check_real("soft_routing_visual_weight", self.soft_routing_visual_weight)
        if self.soft_routing_visual_weight < 0:
            raise ValueError(
                "soft_routing_visual_weight must be a finite number >= 0, got "
                f"{self.soft_routing_visual_weight!r}"
            )
        if self.hard_routing not in HARD_ROUTING:
            raise ValueError(
                f"hard_routing must be one of {', '.join(HARD_ROUTING)}, got {self.hard_routing!r}"
            )
        if (
            self.hard_routing == "image_key"
            and (self.num_queries * self.module_dim) % self.image_key_positions
        ):
            raise ValueError(
                f"num_queries * module_dim ({self.num_queries * self.module_dim}) must be "
                f"divisible by image_key_positions ({self.image_key_positions})"
            )
        _check_real("image_key_threshold", self.image_key_threshold)
        if not -1 <= self.image_key_threshold < 1:
            raise ValueError(
                f"image_key_threshold must be a cosine in [-1, 1), got {self.image_key_threshold!r}"
            )
        for name in ("edit_text_only_inputs", "verify_edits", "inference_mode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_real("refine_lr", self.refine_lr)
        if self.refine_routing_margin is not None:
            _check_real("refine_routing_margin", self.refine_routing_margin)
        _check_real("refine_min_probability", self.refine_min_probability)
        if not 0 <= self.refine_min_probability < 1:
            raise ValueError(
                f"refine_min_probability must be in [0, 1), got {self.refine_min_probability!r}"
            )
        if not self.refine_lr > 0:
            raise ValueError(f"refine_lr must be positive, got {self.refine_lr!r}")
        if self.backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {self.backend!r}")
        for name in ("expert_dtype", "module_dtype"):
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in _DTYPES:
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
        """Write ``liveedit_config.json`` into ``directory``.

        The file records the hf-liveedit version that wrote it (``hf_liveedit_version``) and
        carries no ``peft_type``: PEFT-aware tools must not take the folder for theirs.

        Args:
            directory: the adapter folder.
            **extra: other top-level keys (fingerprint, hashes, ``format_version``, ...).
        """
        from . import __version__  # here: the package imports this module first

        payload = {**self.to_dict(), **extra, "hf_liveedit_version": __version__}
        base_model = payload["base_model_name_or_path"]
        if base_model is not None and hub_model_id(base_model) is None:
            payload["base_model_name_or_path"] = None  # a machine path: never shipped in files
        write_json(Path(directory, CONFIG_NAME), payload)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> tuple[LiveEditConfig, dict[str, Any]]:
        """Read an adapter folder's ``liveedit_config.json`` (or legacy ``adapter_config.json``).

        Args:
            directory: the adapter folder.

        Returns:
            The config and the file's other top-level keys (fingerprint, hashes, version, ...).

        Raises:
            OSError: the file cannot be read.
            ValueError: naming the file: it is corrupt, belongs to another PEFT method
                (``peft_type``), was written by a newer hf-liveedit (``format_version``) or holds
                an unknown field or invalid value.
        """
        path = config_file(directory)
        payload = read_json(path)
        check_format_version(payload, path)
        peft_type = payload.pop("peft_type", PEFT_TYPE)  # absent (new files): LiveEdit's
        if peft_type != PEFT_TYPE:
            raise ValueError(f"{path} is a {peft_type!r} adapter, not a LiveEdit one")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {key: payload.pop(key) for key in list(payload) if key not in known}
        try:
            return cls.from_dict(payload), extra
        except (TypeError, ValueError) as error:  # unknown field, or a value of the wrong type
            raise ValueError(f"{path}: {error}") from error


def config_file(directory: str | Path) -> Path:
    """The config file of an adapter folder: ``liveedit_config.json``, else the legacy name.

    Args:
        directory: the adapter folder.

    Returns:
        The file that exists (``liveedit_config.json`` when neither does, for the error message).
    """
    for name in CONFIG_NAMES:
        if Path(directory, name).is_file():
            return Path(directory, name)
    return Path(directory, CONFIG_NAME)


def hub_model_id(name: str | None) -> str | None:
    """``name`` if it is a Hub repository id, else None (a local path, or nothing).

    Saved files and model cards name the base model only by its Hub id: a local path says
    nothing to another machine and leaks this one's folders.

    Args:
        name: a model's ``name_or_path``.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not name or Path(name).expanduser().exists():
        return None
    try:
        validate_repo_id(name)  # refuses absolute paths, "./x", "a/b/c", "~/x", ...
    except HFValidationError:
        return None
    return name
