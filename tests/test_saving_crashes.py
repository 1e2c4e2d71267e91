"""Saves are all or nothing, at every step; loads refuse folders made for something else.

Every primitive that writes or moves files (``safetensors`` ``save_file``, ``Path.write_text`` /
``write_bytes``, ``json.dump``, ``os.replace`` / ``os.rename``, ``os.link`` / ``symlink`` /
``mkdir`` / ``chmod``, ``shutil.copy2`` / ``copytree`` / ``move``) is wrapped to record what the
save does. The tests then check that the target folder is never written into while the save
runs, and inject an error into each of those calls in turn: the previous save must stay
byte-identical and loadable, and no temporary folder may be left behind. Before each failing
save the model is changed so that *every* file it writes differs from the previous save (a
partial write into the target cannot go unnoticed). A failure of the final rename (and of its
undo), and a process killed (SIGKILL) while writing or between the two renames, are recovered
by the next load or save.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit import LiveEditModel
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

USER_FILE = "preprocessor_config.json"  # a file of the user's that every save must keep


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Call:
    """One call of a file primitive during a save: what it writes (and moves, for a move)."""

    label: str
    destination: Path
    source: Path | None = None

    @property
    def name(self) -> str:
        moved = f"{self.source.name} -> " if self.source is not None else ""
        return f"{self.label}({moved}{self.destination.name})"

    @property
    def is_move(self) -> bool:
        return self.label in ("os.replace", "os.rename", "shutil.move")


def _argument(args: tuple, kwargs: dict, index: int, name: str):
    return args[index] if len(args) > index else kwargs[name]


@dataclass
class FileOps:
    """Wraps every file primitive; ``before(call)`` runs before the real one (may raise)."""

    before: Callable[[Call], None] = lambda call: None
    calls: list[Call] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import safetensors.torch

        def wrap(owner, attribute: str, label: str, destination, source=None) -> None:
            original = getattr(owner, attribute)

            def wrapper(*args, **kwargs):
                call = Call(
                    label,
                    Path(destination(args, kwargs)),
                    None if source is None else Path(source(args, kwargs)),
                )
                self.calls.append(call)
                self.before(call)
                return original(*args, **kwargs)

            monkeypatch.setattr(owner, attribute, wrapper)

        def this(args, kwargs):
            return args[0]

        def moved_from(args, kwargs):
            return _argument(args, kwargs, 0, "src")

        def moved_to(args, kwargs):
            return _argument(args, kwargs, 1, "dst")

        wrap(Path, "write_text", "write_text", this)
        wrap(Path, "write_bytes", "write_bytes", this)
        wrap(json, "dump", "json.dump", lambda a, k: _argument(a, k, 1, "fp").name)
        for owner, attribute in ((os, "replace"), (os, "rename"), (shutil, "move")):
            wrap(owner, attribute, f"{owner.__name__}.{attribute}", moved_to, moved_from)
        for attribute in ("copy2", "copytree", "copyfile", "copy"):
            wrap(shutil, attribute, f"shutil.{attribute}", moved_to, moved_from)
        for attribute in ("link", "symlink"):  # how the user's files are carried over
            wrap(os, attribute, f"os.{attribute}", moved_to, moved_from)
        for attribute in ("mkdir", "chmod"):  # Path.mkdir / Path.chmod call these
            wrap(os, attribute, f"os.{attribute}", lambda a, k: _argument(a, k, 0, "path"))
        real_save_file = safetensors.torch.save_file
        for name, module in list(sys.modules.items()):
            if name.startswith(("hf_liveedit", "safetensors")):
                if getattr(module, "save_file", None) is real_save_file:
                    wrap(
                        module,
                        "save_file",
                        "save_file",
                        lambda a, k: _argument(a, k, 1, "filename"),
                    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def edited_model():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT, "Name it."], [TARGET, "Paris"])
    return liveedit


def change_everything(liveedit: LiveEditModel, step: int) -> None:
    """New generator weights and one more edit: every file of the next save differs."""
    with torch.no_grad():
        liveedit.liveedit_modules.sentinel.add_(0.5)
    liveedit.add_edit(tiny_image(10 + step), PROMPT, f"answer {step}")


def save(liveedit: LiveEditModel, method: str, target: Path) -> None:
    getattr(liveedit, method)(target)


def load_check(method: str, target: Path, expected_edits) -> None:
    """The folder loads (onto a fresh base model) and holds exactly the expected edits."""
    base, processor = tiny_llava()
    if method == "save_pretrained":
        loaded = LiveEditModel.from_pretrained(base, target, processor=processor)
    else:
        loaded = make_liveedit("llava")
        loaded.load_experts(target, allow_generator_mismatch=True)
    assert loaded.edits == expected_edits
    loaded.unload()


@pytest.fixture
def saved(tmp_path):
    """A model, its folder saved once (plus a user file), and that folder's bytes."""

    def make(method: str):
        liveedit = edited_model()
        target = tmp_path / "adapter"
        target.mkdir()
        (target / USER_FILE).write_text('{"user": "file"}')
        save(liveedit, method, target)
        return liveedit, target, snapshot(target), liveedit.edits

    return make


METHODS = ["save_pretrained", "save_experts"]


def is_commit(call: Call, target: Path) -> bool:
    """The move that puts the finished folder in place."""
    return call.is_move and call.destination == target


@pytest.mark.parametrize("method", METHODS)
def test_save_never_writes_into_the_target_folder(saved, method, monkeypatch):
    liveedit, target, before, _ = saved(method)
    change_everything(liveedit, 0)
    committed = []

    def check(call: Call) -> None:
        if committed:
            return
        if is_commit(call, target):
            committed.append(call)
            return
        assert snapshot(target) == before, f"the target changed before {call.name}"
        inside = call.destination.resolve().is_relative_to(target.resolve())
        assert not inside, f"{call.name} writes into the target folder {target}"
        if call.is_move:  # only the old folder as a whole may be moved out of the way
            source = call.source.resolve()
            assert source == target.resolve() or not source.is_relative_to(target.resolve())

    ops = FileOps(before=check)
    ops.install(monkeypatch)
    save(liveedit, method, target)
    monkeypatch.undo()
    writes = [c for c in ops.calls if c.label in ("save_file", "write_text", "json.dump")]
    assert len(writes) >= (5 if method == "save_pretrained" else 2), [c.name for c in ops.calls]
    assert len(committed) == 1, [c.name for c in ops.calls]
    after = snapshot(target)
    assert after[USER_FILE] == before[USER_FILE]
    changed = {name for name in before if after.get(name) != before[name]}
    assert changed == set(before) - {USER_FILE}  # every saved file was replaced
    load_check(method, target, liveedit.edits)


@pytest.mark.parametrize("method", METHODS)
def test_a_failure_at_any_step_of_the_save_leaves_the_previous_folder(saved, method, monkeypatch):
    liveedit, target, before, old_edits = saved(method)
    load_check(method, target, old_edits)
    change_everything(liveedit, 0)
    copy = shutil.copytree(target, target.with_name("dry-run"))
    dry_run = FileOps()
    dry_run.install(monkeypatch)
    save(liveedit, method, copy)
    monkeypatch.undo()
    shutil.rmtree(copy)
    points = [i for i, call in enumerate(dry_run.calls) if not is_commit(call, copy)]
    assert len(points) >= 3, [c.name for c in dry_run.calls]

    failures = []
    for step, point in enumerate(points):
        for error in (OSError, KeyboardInterrupt):
            change_everything(liveedit, step + 1)
            ops = FileOps()

            def inject(call: Call, ops=ops, point=point, error=error) -> None:
                index = len(ops.calls) - 1
                # an OSError from a hard link falls back to a copy: make that fail too
                fallback = index == point + 1 and ops.calls[point].label == "os.link"
                if index == point or (fallback and error is OSError):
                    raise error(f"injected at {call.name}")

            ops.before = inject
            with monkeypatch.context() as patch:
                ops.install(patch)
                try:
                    save(liveedit, method, target)
                except error as raised:
                    if "injected" not in str(raised):
                        failures.append(f"{error.__name__} at call {point}: {raised!r}")
                else:
                    failures.append(f"{error.__name__} at call {point} was swallowed")
            name = dry_run.calls[point].name
            if not target.is_dir() or snapshot(target) != before:
                failures.append(f"{error.__name__} at {name}: the previous folder changed")
                continue
            leftovers = sorted(p.name for p in target.parent.iterdir() if p != target)
            if leftovers:
                failures.append(f"{error.__name__} at {name}: left {leftovers}")
    assert not failures, "\n".join(failures)
    load_check(method, target, old_edits)  # byte-identical to a folder that loads


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p != target)


def fail_final_renames(target: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> list[Call]:
    """Make the first ``count`` renames onto ``target`` (the final rename, then its undo) fail."""
    failed: list[Call] = []

    def inject(call: Call) -> None:
        if is_commit(call, target) and len(failed) < count:
            failed.append(call)
            raise OSError("injected at a rename onto the target")

    FileOps(before=inject).install(monkeypatch)
    return failed


@pytest.mark.parametrize("method", METHODS)
def test_a_failure_of_the_final_rename_leaves_the_previous_folder(saved, method, monkeypatch):
    liveedit, target, before, old_edits = saved(method)
    change_everything(liveedit, 0)
    failed = fail_final_renames(target, monkeypatch, count=1)
    with pytest.raises(OSError, match="injected"):
        save(liveedit, method, target)
    monkeypatch.undo()
    assert len(failed) == 1
    assert target.is_dir() and snapshot(target) == before and not leftovers(target)
    load_check(method, target, old_edits)


@pytest.mark.parametrize("then", ["load", "save"])
def test_a_failed_final_rename_and_undo_are_recovered_by_the_next_load_or_save(
    saved, then, monkeypatch
):
    liveedit, target, before, old_edits = saved("save_pretrained")
    change_everything(liveedit, 0)
    failed = fail_final_renames(target, monkeypatch, count=2)
    with pytest.raises(OSError, match="injected"):
        liveedit.save_pretrained(target)
    monkeypatch.undo()
    assert len(failed) == 2 and not target.exists()  # the previous folder waits beside it
    assert [name.split("-")[0] for name in leftovers(target)] == [".adapter.old"]
    if then == "load":
        load_check("save_pretrained", target, old_edits)
        assert snapshot(target) == before
    else:  # the save first puts the previous folder back: the user's file is kept
        liveedit.save_pretrained(target)
        assert snapshot(target)[USER_FILE] == before[USER_FILE]
        load_check("save_pretrained", target, liveedit.edits)
    assert not leftovers(target)


# A child process saves `make_liveedit()` into argv[1] and pauses (printing "paused") at argv[2]:
# in save_file ("writing") or just before the rename that puts the new folder in place.
CHILD = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import torch
torch.set_num_threads(1)
import hf_liveedit.model
from conftest import make_liveedit

target, point = Path(sys.argv[1]), sys.argv[2]
real_save_file, real_replace = hf_liveedit.model.save_file, os.replace

def pause():
    print("paused", flush=True)
    time.sleep(600)

def save_file(*args, **kwargs):
    pause()

def replace(source, destination):
    if Path(destination) == target:
        pause()
    real_replace(source, destination)

if point == "writing":
    hf_liveedit.model.save_file = save_file
else:
    os.replace = replace
make_liveedit().save_pretrained(target)
"""


@pytest.mark.parametrize("point", ["writing", "between-renames"])
def test_a_save_killed_mid_way_is_recovered_by_the_next_load(saved, point):
    _, target, before, old_edits = saved("save_pretrained")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), point, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(300, child.kill)  # never hang the suite on a stuck child
    watchdog.start()
    try:
        paused = child.stdout.readline()
        assert paused == "paused\n", child.communicate()[1]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()  # reaped: its pid no longer runs
    finally:
        watchdog.cancel()
    names = [name.split("-")[0] for name in leftovers(target)]
    if point == "writing":
        assert snapshot(target) == before and names == [".adapter.saving"]
    else:
        assert not target.exists() and names == [".adapter.old", ".adapter.saving"]
    load_check("save_pretrained", target, old_edits)
    assert snapshot(target) == before and not leftovers(target)


def test_only_leftovers_of_dead_processes_on_this_machine_are_cleaned(tmp_path):
    liveedit = make_liveedit("llava")
    target = tmp_path / "adapter"
    liveedit.save_experts(target)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead, alive, host = int(finished.stdout), os.getppid(), socket.gethostname()
    folders = {
        "dead": tmp_path / f".adapter.saving-{dead}@{host}-0123abcd",
        "alive": tmp_path / f".adapter.saving-{alive}@{host}-0123abcd",
        "elsewhere": tmp_path / f".adapter.saving-{dead}@another-host-0123abcd",
        "old format": tmp_path / ".adapter.saving-k2j3h4",
        "other target": tmp_path / f".adapter2.saving-{dead}@{host}-0123abcd",
    }
    for folder in folders.values():
        folder.mkdir()
    liveedit.save_experts(target)
    assert {name for name, folder in folders.items() if folder.exists()} == set(folders) - {"dead"}


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_new_folder_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    liveedit = make_liveedit("llava")
    target = tmp_path / "experts"
    previous = os.umask(0o027)
    try:
        liveedit.save_experts(target)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()} == {0o640}
    target.chmod(0o700)  # the user's choice survives the next save
    liveedit.save_experts(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_a_symlinked_target_is_saved_into_its_folder_and_stays_a_link(tmp_path):
    liveedit = edited_model()
    link = tmp_path / "link"
    link.symlink_to("real")  # relative, and dangling until the first save creates its folder
    liveedit.save_pretrained(link)
    (tmp_path / "real" / USER_FILE).write_text("{}")
    change_everything(liveedit, 0)
    liveedit.save_pretrained(link)
    assert link.is_symlink() and os.readlink(link) == "real"
    assert (tmp_path / "real" / USER_FILE).read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    load_check("save_pretrained", link, liveedit.edits)


def test_the_users_files_are_copied_where_hard_links_are_impossible(saved, monkeypatch):
    liveedit, target, before, _ = saved("save_experts")

    def cross_device(source, destination, **kwargs):
        raise OSError(18, "Invalid cross-device link")  # EXDEV: as on FAT or across mounts

    monkeypatch.setattr(os, "link", cross_device)
    change_everything(liveedit, 0)
    liveedit.save_experts(target)
    monkeypatch.undo()
    assert (target / USER_FILE).read_bytes() == before[USER_FILE] and not leftovers(target)
    load_check("save_experts", target, liveedit.edits)


def test_the_users_files_are_hard_linked_not_copied(saved, monkeypatch):
    liveedit, target, before, _ = saved("save_pretrained")
    (target / "big.bin").write_bytes(os.urandom(1 << 20))
    (target / "processor").mkdir()
    (target / "processor" / "tokenizer.json").write_text("{}")
    (target / "alias.json").symlink_to(USER_FILE)
    kept = [USER_FILE, "big.bin", "processor/tokenizer.json"]
    inodes = {name: (target / name).stat().st_ino for name in kept}
    contents = {name: (target / name).read_bytes() for name in kept}

    def refuse(*args, **kwargs):
        raise AssertionError(f"a file was copied: {args}")

    for name in ("copy", "copy2", "copyfile"):
        monkeypatch.setattr(shutil, name, refuse)
    change_everything(liveedit, 0)
    liveedit.save_pretrained(target)
    monkeypatch.undo()
    assert {name: (target / name).stat().st_ino for name in kept} == inodes
    assert {name: (target / name).read_bytes() for name in kept} == contents
    assert os.readlink(target / "alias.json") == USER_FILE
    assert (target / "edits.json").read_bytes() != before["edits.json"]
    load_check("save_pretrained", target, liveedit.edits)


# --- loading refuses folders made for another model or generator -----------------------------


def test_an_adapter_with_another_fingerprint_is_refused(tmp_path):
    liveedit = edited_model()
    liveedit.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "liveedit_config.json").read_text())
    config["base_model_fingerprint"]["hidden_size"] += 1  # same weights, other recorded shape
    (tmp_path / "liveedit_config.json").write_text(json.dumps(config))
    base, processor = tiny_llava()
    with pytest.raises(ValueError, match="different base model.*hidden_size"):
        LiveEditModel.from_pretrained(base, tmp_path, processor=processor)


def test_experts_with_another_fingerprint_are_refused_and_the_repository_kept(tmp_path):
    edited_model().save_experts(tmp_path)
    meta = json.loads((tmp_path / "edits.json").read_text())
    meta["base_model_fingerprint"]["edit_layer"] += 1
    (tmp_path / "edits.json").write_text(json.dumps(meta))
    other = edited_model()  # same base model and generator weights (seeded)
    other.clear_edits()
    other.add_edit(tiny_image(3), PROMPT, "kept")
    with pytest.raises(ValueError, match="different base model.*edit_layer"):
        other.load_experts(tmp_path)
    assert [record.target for record in other.edits] == ["kept"]


def test_experts_of_another_generator_are_refused_and_the_repository_kept(tmp_path):
    edited_model().save_experts(tmp_path)
    other = edited_model()
    other.load_experts(tmp_path)  # the same (seeded) generator: accepted
    assert [record.target for record in other.edits] == [TARGET, "Paris"]
    with torch.no_grad():
        other.liveedit_modules.expert_norm.bias.add_(1e-3)
    other.clear_edits()
    other.add_edit(tiny_image(3), PROMPT, "kept")
    with pytest.raises(ValueError, match="different generator"):
        other.load_experts(tmp_path)
    assert [record.target for record in other.edits] == ["kept"]
