"""Where the benchmark and the packages it is built from live on disk."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HF_LIVEEDIT_CACHE"


def cache_root() -> Path:
    """Return the hf-liveedit cache root: ``$HF_LIVEEDIT_CACHE`` or ``~/.cache/hf_liveedit``.

    Returns:
        The cache root (not created).
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hf_liveedit"


def default_benchmark_dir() -> Path:
    """Return the default output folder of the packaged benchmark.

    Returns:
        ``cache_root() / "benchmark"``.
    """
    return cache_root() / "benchmark"


def packages_dir() -> Path:
    """Return the folder where Debian packages are unpacked for the build.

    Returns:
        ``cache_root() / "packages"``.
    """
    return cache_root() / "packages"


def debian_cache_dir() -> Path:
    """Return the folder where Debian packages that are not installed are unpacked.

    Returns:
        ``packages_dir() / "debian"``, one package per subfolder.
    """
    return packages_dir() / "debian"
