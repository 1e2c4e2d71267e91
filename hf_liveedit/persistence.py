"""On-disk format of LiveEdit adapters and expert repositories.

A saved adapter directory holds:

* ``liveedit_config.json``: the :class:`~hf_liveedit.LiveEditConfig`, the base-model
  fingerprint, the generator's SHA-256 and the hf-liveedit version (folders saved by
  earlier versions name it ``adapter_config.json``; still read);
* ``generator.safetensors``: the trainable LiveEdit modules;
* ``experts.safetensors`` + ``edits.json``: the expert repository and its edit metadata (the
  JSON also carries the fingerprint and the SHA-256 of the generator that made the experts);
* ``README.md``: a model card.

Saves go through :func:`atomic_directory` (all or nothing, recovered after a crash); loads read
every file through :func:`read_json` / :func:`read_safetensors`, whose errors name the file and
what is wrong with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

if TYPE_CHECKING:
    from .repository import EditRecord

GENERATOR_WEIGHTS_NAME = "generator.safetensors"
EXPERTS_WEIGHTS_NAME = "experts.safetensors"
EDITS_NAME = "edits.json"
#: Version of the files written; files of a newer version are refused, older ones are read.
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


def check_base_model(
    found: dict[str, Any],
    fingerprint: dict[str, Any],
    sha256: Callable[[], str],
    what: str,
    allow_mismatch: bool = False,
) -> None:
    """Refuse a file made for another base model: other architecture, or the same with other weights.

    Args:
        found: the file's metadata (``base_model_fingerprint``, and ``base_model_sha256`` unless
            it was saved before hf-liveedit recorded it: then only the fingerprint is checked).
        fingerprint: the fingerprint of the model it is loaded onto.
        sha256: computes that model's :meth:`LiveEditModel.base_model_sha256`; called only when
            the file records one (hashing the weights takes about 1 s per 500 MB).
        what: What is being loaded, for the message (e.g. "The adapter in out/").
        allow_mismatch: Warn instead of raising when only the weights differ.

    Raises:
        ValueError: The fingerprints differ, or the hashes differ and ``allow_mismatch`` is False.
    """
    check_fingerprint(fingerprint, found["base_model_fingerprint"], what)
    recorded = found.get("base_model_sha256")
    if recorded is None:
        return
    current = sha256()
    if recorded == current:
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


# --- reading, with errors that name the file ---------------------------------------------------


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON with sorted keys (stable, diff-friendly files)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))


def require_keys(payload: dict[str, Any], keys: Iterable[str], path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` if ``payload`` (read from it) lacks any of ``keys``."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise ValueError(
            f"{path} lacks the keys {missing}: it is incomplete or not a LiveEdit file"
        )


def read_json(path: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Read a JSON object.

    Args:
        path: the file.
        required: keys the object must have.

    Raises:
        OSError: the file cannot be read (e.g. ``FileNotFoundError``; the message names it).
        ValueError: it is not a JSON object (truncated, corrupt) or lacks a required key.
    """
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}): it is corrupt or truncated"
        ) from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a JSON {type(payload).__name__}, expected an object")
    require_keys(payload, required, path)
    return payload


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file onto the CPU.

    Raises:
        OSError: the file cannot be read (e.g. ``FileNotFoundError``; the message names it).
        ValueError: it is not a complete safetensors file (truncated, corrupt header).
    """
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({error}): it is corrupt or truncated"
        ) from error


def check_format_version(payload: dict[str, Any], path: Path) -> None:
    """Refuse a file written by a newer hf-liveedit (or with a malformed ``format_version``).

    A missing version means a file saved before versions were recorded: it is read like version 1.
    """
    version = payload.get("format_version", FORMAT_VERSION)
    if type(version) is not int or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version!r}; this hf-liveedit reads versions up to "
            f"{FORMAT_VERSION}. Upgrade hf-liveedit to load it."
        )


def _exact_cast(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether every value of ``source`` is exactly representable in ``target``."""
    if source == target:
        return True
    if not (source.is_floating_point and target.is_floating_point):
        return False
    have, want = torch.finfo(source), torch.finfo(target)
    return (
        want.eps <= have.eps
        and want.max >= have.max
        and want.smallest_normal <= have.smallest_normal
    )


def cast_floats(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, path: Path, setting: str
) -> dict[str, torch.Tensor]:
    """Cast the floating-point tensors read from ``path`` to ``dtype``; warn if that rounds them.

    Exact casts are silent: ``trainers.export.export_generator`` deliberately stores float32
    generators in float16 (the packaged one too), and the generator's SHA-256 proves the loaded
    values are the saved ones. Lossy casts (e.g. float32 to float16) change the weights: warned.

    Args:
        tensors: as read from the file.
        dtype: the dtype the configuration asks for.
        path: the file, for the message.
        setting: the configuration field that sets ``dtype`` (``module_dtype``, ``expert_dtype``).
    """
    lossy = sorted(
        str(value.dtype).removeprefix("torch.")
        for value in tensors.values()
        if value.is_floating_point() and not _exact_cast(value.dtype, dtype)
    )
    if lossy:
        warnings.warn(
            f"{path} stores {'/'.join(sorted(set(lossy)))} tensors; they are cast to "
            f"{str(dtype).removeprefix('torch.')} ({setting}), which rounds their values",
            stacklevel=3,
        )
    return {name: v.to(dtype) if v.is_floating_point() else v for name, v in tensors.items()}


def check_generator_sha256(
    state: dict[str, torch.Tensor], recorded: str | None, path: Path
) -> None:
    """Refuse generator weights whose SHA-256 is not the one recorded when they were saved.

    Args:
        state: the weights of ``path``, cast to the modules' dtype (as
            :meth:`LiveEditModel.generator_sha256` hashes them).
        recorded: ``generator_sha256`` of the adapter's config; ``None`` (not recorded) passes.
        path: the weights file, for the message.

    Raises:
        ValueError: the hashes differ (a corrupt, truncated-and-padded or replaced file).
    """
    found = state_dict_sha256(state)
    if recorded is not None and found != recorded:
        raise ValueError(
            f"{path} hashes to {found[:16]}..., not to the generator_sha256 {recorded[:16]}... "
            "recorded beside it when it was saved: the file is corrupt or was changed. "
            "Download or save the adapter again."
        )


def read_generator(path: Path, dtype: torch.dtype, recorded_sha256: str | None) -> dict:
    """The generator weights of ``path`` in the modules' ``dtype``, verified against their hash.

    See :func:`read_safetensors`, :func:`cast_floats` and :func:`check_generator_sha256`.
    """
    state = cast_floats(read_safetensors(path), dtype, path, "module_dtype")
    check_generator_sha256(state, recorded_sha256, path)
    return state


def read_edit_records(entries: Any, path: Path) -> list[EditRecord]:
    """The ``edits`` list of an ``edits.json`` as records.

    Raises:
        ValueError: naming ``path``: an entry is malformed or an edit id appears twice.
    """
    # imported here: repository -> modules -> config -> persistence would be an import cycle
    from .repository import EditRecord

    try:
        records = [EditRecord(**entry) for entry in entries]
    except TypeError as error:  # not a list of objects, or a field missing or unknown
        raise ValueError(f"{path} holds a malformed edit record ({error})") from error
    fields = ("id", "prompt", "target")
    if not all(isinstance(getattr(record, name), str) for record in records for name in fields):
        raise ValueError(f"{path} holds an edit record whose {'/'.join(fields)} is not a string")
    repeated = sorted(key for key, count in Counter(r.id for r in records).items() if count > 1)
    if repeated:
        raise ValueError(f"{path} lists the edit ids {repeated} more than once; ids must be unique")
    return records


# --- crash-safe saves --------------------------------------------------------------------------

_HOST = socket.gethostname()
#: Work folders of the saves running in this process: never taken for leftovers of a dead one.
_IN_FLIGHT: set[str] = set()


def _work_folder(target: Path, kind: str) -> Path:
    """A fresh path beside ``target`` for a save's ``saving`` (new) or ``old`` (retired) folder.

    The name carries the owning process (pid and host), so that a later save or load can tell a
    leftover of a dead process from a folder of a save still running.
    """
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:8]}")


def _owner_is_running(pid: int, host: str, folder: Path) -> bool:
    """Whether the process that made ``folder`` may still be using it (unknown counts as yes)."""
    if host != _HOST:
        return True  # its processes cannot be seen from here
    if pid == os.getpid():
        return str(folder) in _IN_FLIGHT
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def recover_leftovers(target: str | Path) -> None:
    """Finish or undo the saves of ``target`` whose process was killed mid-way.

    A save (:func:`atomic_directory`) works in folders beside the target named
    ``.NAME.saving-PID@HOST-XXXXXXXX`` (the new files) and, between its two renames,
    ``.NAME.old-PID@HOST-XXXXXXXX`` (the previous folder, whole). Those of a process that no
    longer runs on this machine (or of a save of this process that has ended) are leftovers:

    * a retired (``old``) folder is renamed back to ``target`` if ``target`` is missing (the
      process died between the renames), and deleted otherwise (it died after the new folder was
      in place, while deleting the old one);
    * a staging (``saving``) folder is deleted: its save never completed.

    Folders of a process still running (or whose pid was reused), of another machine, or in
    another naming scheme (older hf-liveedit) are left alone. Called by every save and every
    load of a local folder.
    """
    target = Path(os.path.realpath(target))
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(old|saving)-(\d+)@(.+)-[0-9a-f]{{8}}")
    leftovers = []
    for folder in sorted(target.parent.iterdir()):
        match = pattern.fullmatch(folder.name)
        if match and folder.is_dir() and not folder.is_symlink():
            kind, pid, host = match.groups()
            if not _owner_is_running(int(pid), host, folder):
                leftovers.append((kind, folder))
    for kind, folder in sorted(leftovers, key=lambda item: item[0] != "old"):  # restore first
        if kind == "old" and not os.path.lexists(target):
            os.replace(folder, target)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    """Hard-link a file into the new folder (no data copied, same inode); copy if impossible."""
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)
        return
    try:
        os.link(source, destination)
    except OSError:  # a filesystem without hard links (FAT, some network shares), or not ours
        shutil.copy2(source, destination)


@contextlib.contextmanager
def atomic_directory(target: str | Path, drop: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty folder to save into; it replaces ``target`` only if the block succeeds.

    The block writes into a staging folder beside ``target``. Then the entries of ``target``
    the block did not write and ``drop`` does not name (a processor, the user's files,
    sub-folders) are hard-linked into it
    (no data is copied: each file keeps its inode; it is copied only where hard links are
    impossible), ``target`` is renamed aside, the staging folder renamed to ``target``, and the
    old folder deleted. ``target`` is never written into, and the files of a save replace the
    previous ones all together or not at all:

    * a failure in the block or in any step before the final rename leaves ``target`` untouched;
    * a failure of the final rename renames the old folder back;
    * if the process dies between the renames (or that undo fails), the next save or load of
      ``target`` puts the old folder back, and leftovers of a killed save are deleted then (see
      :func:`recover_leftovers`).

    A symlinked ``target`` is saved into the folder it points to and stays a symlink. The saved
    files, and a new folder, get the permissions the umask allows (safetensors alone would
    write 0o600 files); a replaced folder keeps its mode.

    Not covered: concurrent saves of one target (the last one wins), files written into
    ``target`` by another program during the save (lost), and a load of ``target`` by another
    process at the instant between the two renames (it finds no folder).

    Args:
        target: the folder to create or replace.
        drop: names of entries of ``target`` not to keep (files this save makes obsolete, e.g.
            experts of another generator, or a config under its legacy name).

    Raises:
        NotADirectoryError: ``target`` is a file.
    """
    drop = frozenset(drop)
    real = Path(os.path.realpath(target))  # a symlink's destination: the link itself is kept
    if real.exists() and not real.is_dir():
        raise NotADirectoryError(f"{target} is a file, not a folder: cannot save into it")
    if not real.parent.is_dir():
        real.parent.mkdir(parents=True, exist_ok=True)
    recover_leftovers(real)
    staging = _work_folder(real, "saving")
    _IN_FLIGHT.add(str(staging))
    try:
        staging.mkdir()  # mode 0o777 less the umask (tempfile.mkdtemp would give 0o700)
        yield staging
        # safetensors writes its files 0o600 whatever the umask: give them the umask's mode too
        file_mode = stat.S_IMODE(staging.stat().st_mode) & 0o666
        for path in staging.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(file_mode)
        if not real.is_dir():
            os.replace(staging, real)
            return
        staging.chmod(stat.S_IMODE(real.stat().st_mode))
        for entry in real.iterdir():
            destination = staging / entry.name
            if os.path.lexists(destination) or entry.name in drop:
                continue  # written by this save, or obsolete
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, destination, symlinks=True, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, destination)
        retired = _work_folder(real, "old")
        _IN_FLIGHT.add(str(retired))
        try:
            os.replace(real, retired)
            try:
                os.replace(staging, real)
            except BaseException:
                os.replace(retired, real)  # undo: the previous folder is back, whole
                raise
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            _IN_FLIGHT.discard(str(retired))
    finally:
        _IN_FLIGHT.discard(str(staging))
        shutil.rmtree(staging, ignore_errors=True)
