"""On-disk format of LiveEdit adapters and expert repositories.

A saved adapter directory holds:

* ``adapter_config.json``: the :class:`~hf_liveedit.LiveEditConfig`, the base-model fingerprint
  and the generator's SHA-256;
* ``generator.safetensors``: the trainable LiveEdit modules;
* ``experts.safetensors`` + ``edits.json``: the expert repository and its edit metadata (the
  JSON also carries the fingerprint and the SHA-256 of the generator that made the experts);
* ``README.md``: a model card.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

GENERATOR_WEIGHTS_NAME = "generator.safetensors"
EXPERTS_WEIGHTS_NAME = "experts.safetensors"
EDITS_NAME = "edits.json"
FORMAT_VERSION = 1


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict (order independent)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        if tensor.numel():  # hashed in place: no copy of the (possibly large) weights
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_base_model_sha256(
    recorded: str | None, current: str, what: str, allow_mismatch: bool = False
) -> None:
    """Refuse (or, with ``allow_mismatch``, loudly warn about) weights made for another backbone.

    Args:
        recorded: ``base_model_sha256`` read from the file; ``None`` for files saved before
            hf-liveedit recorded it (accepted: only the fingerprint can be checked then).
        current: :meth:`LiveEditModel.base_model_sha256` of the model they are loaded onto.
        what: What is being loaded, for the message (e.g. "The adapter in out/").
        allow_mismatch: Warn instead of raising.

    Raises:
        ValueError: The hashes differ and ``allow_mismatch`` is False.
    """
    if recorded is None or recorded == current:
        return
    message = (
        f"{what} was made for a base model whose weights hash to {recorded[:16]}..., but this "
        f"model's weights hash to {current[:16]}...: same architecture, different weights (another "
        "build or checkpoint, or the same one loaded in another dtype). Its edits may not take or "
        "may leak. Load it onto the model it was made for, retrain it for this one, or pass "
        "allow_base_model_mismatch=True to use it anyway."
    )
    if not allow_mismatch:
        raise ValueError(message)
    warnings.warn(message, stacklevel=3)


def check_fingerprint(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` if ``found`` (from a file) differs from the current base model."""
    differences = {
        key: (found.get(key), expected.get(key))
        for key in sorted(set(expected) | set(found))
        if found.get(key) != expected.get(key)
    }
    if differences:
        details = "; ".join(
            f"{key}: saved {saved!r}, this model {ours!r}"
            for key, (saved, ours) in differences.items()
        )
        raise ValueError(f"{what} was made for a different base model ({details})")


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    Files already in ``target`` that the block does not write are carried over, so saving into
    a folder that also holds, say, a processor keeps it. If the block raises (or the process dies),
    ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        yield staging
        if target.is_dir():
            for entry in target.iterdir():
                if not (staging / entry.name).exists():
                    copy = shutil.copytree if entry.is_dir() else shutil.copy2
                    copy(entry, staging / entry.name)
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
