"""Sub-commands of the `hf-liveedit` CLI, one module each (see `hf_liveedit.cli`).

This module holds what they share to check their inputs before any heavy work: the
:class:`UsageError` the CLI reports in one line (exit code 2), ``argparse`` types that
range-check numbers, and checks of the paths a command reads or creates. It imports nothing
heavy, so that building the parser (``hf-liveedit --help``) stays fast.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

# A Hub repository id: "name" or "owner/name" (anything else that does not exist is a bad path).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class UsageError(Exception):
    """A mistake in a command line or in a file it names.

    :func:`hf_liveedit.cli.main` prints it as one line, ``hf-liveedit: error: ...``, and exits
    with code 2 (the traceback only with ``--debug``). Raise it only for what the user can fix;
    a bug must stay an ordinary exception so that its traceback shows.
    """


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    # KeyError's str() is the repr of its argument; show the message itself
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)


@contextmanager
def reading(
    what: str, errors: tuple[type[Exception], ...] = (OSError, ValueError, KeyError)
) -> Iterator[None]:
    """Report ``errors`` raised inside the block as a :class:`UsageError` about ``what``.

    For the reading of a user's input (a config, a data file, a model folder) before the heavy
    work: there, these errors mean the input is wrong, not the code.

    Args:
        what: The input, as the user gave it (e.g. ``"--data foo.json"``).
        errors: The exception types that mean a bad input.
    """
    try:
        yield
    except errors as error:
        raise UsageError(f"{what}: {first_line(error)}") from error


def number_problem(
    value: object,
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    strict: bool = False,
) -> str | None:
    """What is wrong with ``value`` as a ``kind`` in ``[low, high]`` (open interval if ``strict``).

    Returns:
        None when ``value`` is fine, else a message such as ``"expected an integer >= 1, got -5"``.
    """
    wanted = "an integer" if kind is int else "a finite number"
    if low is not None and high is not None:
        wanted += f" {'strictly ' if strict else ''}between {low} and {high}"
    elif low is not None:
        wanted += f" {'>' if strict else '>='} {low}"
    elif high is not None:
        wanted += f" {'<' if strict else '<='} {high}"
    allowed = int if kind is int else (int, float)
    ok = (
        isinstance(value, allowed)
        and not isinstance(value, bool)  # True is an int to Python, not to a user
        and math.isfinite(value)
        and (low is None or (value > low if strict else value >= low))
        and (high is None or (value < high if strict else value <= high))
    )
    return None if ok else f"expected {wanted}, got {value!r}"


def check_number(
    name: str,
    value: object,
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    strict: bool = False,
) -> int | float:
    """``value`` if :func:`number_problem` finds nothing wrong, else a :class:`UsageError`.

    For settings that do not come through ``argparse`` (a YAML file, a dataclass parser).

    Args:
        name: The setting, as the user wrote it (named in the message).
        value: Its value.
        kind, low, high, strict: As for :func:`number_problem`.
    """
    problem = number_problem(value, kind, low, high, strict=strict)
    if problem:
        raise UsageError(f"{name}: {problem}")
    return value  # type: ignore[return-value]  (number_problem checked the type)


def number(
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    strict: bool = False,
) -> Callable[[str], int | float]:
    """An ``argparse`` type: a ``kind`` in range, refused at parse time (before any heavy work)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = text  # reported below as "expected ..., got 'text'"
        problem = number_problem(value, kind, low, high, strict=strict)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


#: An ``argparse`` type for counts and sizes.
positive_int = number(int, 1)


def int_list(text: str) -> tuple[int, ...]:
    """An ``argparse`` type: comma-separated positive integers, e.g. ``"1,10,100"``."""
    values = tuple(positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


def per_size(text: str) -> dict[int, int]:
    """An ``argparse`` type: ``"N:K,N:K"`` (a positive count K per size N); ``""`` is empty."""
    pairs = [part.split(":") for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected N:K pairs such as '1:50,10:10', got {text!r}")
    return {positive_int(size.strip()): positive_int(count.strip()) for size, count in pairs}


#: An adapter folder holds one of these (``hf_liveedit.config.CONFIG_NAMES``, not imported here:
#: it imports torch, which ``--help`` must not wait for).
ADAPTER_CONFIGS = ("liveedit_config.json", "adapter_config.json")


def check_path(
    flag: str,
    path: str | Path,
    kind: Literal["file", "dir", "new_dir"],
    containing: str | tuple[str, ...] | None = None,
) -> Path:
    """Check a path the user gave, before any work that needs it.

    Args:
        flag: The option that named it (in the message).
        path: The path (``~`` is expanded).
        kind: ``"file"`` or ``"dir"``: it must exist as one. ``"new_dir"``: a folder the command
            writes; it may exist (as a folder), else its parent must, so that a typo does not
            silently create a deep tree of folders.
        containing: For ``"dir"``: a file that must be inside (e.g. ``config.json``), or
            names of which one must be (e.g. :data:`ADAPTER_CONFIGS`).

    Returns:
        The expanded path.
    """
    path = Path(path).expanduser()
    if kind == "file" and not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    if kind == "dir":
        if not path.is_dir():
            raise UsageError(f"{flag} {path}: no such folder")
        names = (containing,) if isinstance(containing, str) else containing or ()
        if names and not any((path / name).is_file() for name in names):
            raise UsageError(f"{flag} {path}: not the right kind of folder (no {names[0]})")
    if kind == "new_dir":
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {path}: exists and is not a folder")
        if not path.exists() and not path.absolute().parent.is_dir():
            raise UsageError(f"{flag} {path}: its parent folder does not exist (create it first)")
    return path


def check_model_name(flag: str, name: str, keywords: tuple[str, ...] = ("default", "tiny")) -> str:
    """Check a model argument: a keyword, a saved model folder, or a Hub repository id.

    A path that does not exist and cannot be a Hub id (``/x``, ``./x``, ``a/b/c``) is refused
    here rather than by transformers after its imports.
    """
    if name in keywords:
        return name
    path = Path(name).expanduser()
    if path.exists():
        check_path(flag, path, "dir", containing="config.json")
    elif not _HUB_ID.fullmatch(name):
        choices = ", ".join(repr(k) for k in keywords)
        raise UsageError(f"{flag} {name}: no such folder (nor {choices}, nor a Hub id)")
    return name
