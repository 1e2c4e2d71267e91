"""Mutation check: do the tests fail when the method is wrong?

Applies a curated list of small, deliberate bugs (mutations) to the library, one at a time, each
in a temporary copy of the repository, runs the tests that should catch it, and prints a
Markdown table: which mutations were caught, and by which test.

    .venv/bin/python scripts/mutation_check.py                 # every mutation (several minutes)
    .venv/bin/python scripts/mutation_check.py --only routing-hard-filter-tie
    .venv/bin/python scripts/mutation_check.py --list          # the mutations, nothing run
    .venv/bin/python scripts/mutation_check.py --jobs 2        # two copies in parallel

How it makes sure the copy's code is what the tests import: the repository is installed in
editable mode from its own folder, and setuptools' editable finder maps ``hf_liveedit.kernels``
and ``hf_liveedit.trainers`` to the *original* ``kernels/`` and ``trainers/`` folders whenever the
package found first has no such subfolder. So the copy gets ``hf_liveedit/kernels`` and
``hf_liveedit/trainers`` links to its own ``kernels/`` and ``trainers/``, pytest runs from the
copy's root (``python -m pytest`` puts it first on ``sys.path``, as does ``PYTHONPATH``), and
before any mutation runs, a check imports the packages in the copy and fails unless every
module file lies inside the copy. Bytecode is not written (``PYTHONDONTWRITEBYTECODE``), so a
reverted file is never shadowed by the mutated one's cache.

The list must not rot: every mutation's original text must occur exactly once in its file, or
the command stops before running anything. The unmutated copy must pass every test file the
list names (checked first, unless ``--skip-baseline``).

Exit status: 0 when every mutation was caught, 1 when one survived, 2 when the list or the
baseline is broken.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Top-level folders installed under the ``hf_liveedit`` namespace (see pyproject.toml).
NAMESPACED = {"kernels": "hf_liveedit/kernels", "trainers": "hf_liveedit/trainers"}
IGNORED = (".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "build")
IGNORED += ("dist", "out", "*.pyc")


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug.

    Attributes:
        name: short id (``--only NAME``).
        file: path relative to the repository root.
        original: exact text to replace; must occur exactly once in ``file``.
        replacement: the buggy text.
        tests: test files (or pytest node ids) that must catch it.
        description: what the bug does, in words.
    """

    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    description: str


WIRING = "tests/test_method_wiring.py"
KERNELS = "tests/test_kernels.py"
SAVING = "tests/test_saving_crashes.py"
HUB = "tests/test_commands_and_hub.py"
LOSSES = "tests/test_losses.py"
METRICS = "tests/test_evaluation_metrics.py"
INTEGRITY = "tests/test_integrity.py"
VERIFY = "tests/test_verification.py"
IMAGE_KEY = "tests/test_image_key.py"

MUTATIONS: tuple[Mutation, ...] = (
    # --- routing and fusion (PyTorch reference) ---------------------------------------------
    Mutation(
        "routing-hard-filter-tie",
        "hf_liveedit/routing.py",
        "kept = (visual > threshold[:, None]) & routable[:, None]",
        "kept = (visual >= threshold[:, None]) & routable[:, None]",
        (WIRING,),
        "hard filter keeps experts that tie with the sentinel (`>=`)",
    ),
    Mutation(
        "routing-ignores-routable",
        "hf_liveedit/routing.py",
        "kept = (visual > threshold[:, None]) & routable[:, None]",
        "kept = visual > threshold[:, None]",
        (WIRING, KERNELS),
        "hard routing ignores the `routable` flag",
    ),
    Mutation(
        "routing-softmax-over-all",
        "hf_liveedit/routing.py",
        'logits = scores.masked_fill(~kept, float("-inf"))',
        "logits = scores",
        (WIRING, KERNELS),
        "soft routing normalises over every expert, not the kept set",
    ),
    Mutation(
        "routing-no-sigmoid",
        "hf_liveedit/routing.py",
        "return torch.sigmoid(scores) * softmax * kept",
        "return softmax * kept",
        (WIRING, KERNELS),
        "soft routing drops the sigmoid factor",
    ),
    Mutation(
        "routing-sim-scale",
        "hf_liveedit/routing.py",
        "return products * (1.0 / (k * math.sqrt(d_m)))",
        "return products * (1.0 / k)",
        (WIRING, KERNELS),
        "`sim` without the 1/sqrt(d_m) scaling",
    ),
    Mutation(
        "fusion-no-layernorm",
        "hf_liveedit/routing.py",
        "normed = F.layer_norm(\n"
        "        hidden.to(compute_dtype), hidden.shape[-1:], norm_weight, norm_bias, norm_eps\n"
        "    )",
        "normed = hidden.to(compute_dtype)",
        (WIRING, KERNELS),
        "fusion skips the expert LayerNorm",
    ),
    Mutation(
        "fusion-no-relu",
        "hf_liveedit/routing.py",
        'activations = torch.relu(torch.einsum("bld,bkrd->blkr", normed, up_sel))',
        'activations = torch.einsum("bld,bkrd->blkr", normed, up_sel)',
        (WIRING, KERNELS),
        "fusion without the ReLU",
    ),
    # --- Triton kernels (interpreted on CPU) -----------------------------------------------
    Mutation(
        "kernel-hard-filter-tie",
        "kernels/routing_triton.py",
        "kept = (hard * scale > threshold[:, None]) & routable[:, None] & mask_n[None, :]",
        "kept = (hard * scale >= threshold[:, None]) & routable[:, None] & mask_n[None, :]",
        (WIRING,),
        "Triton hard filter keeps experts that tie with the sentinel (`>=`)",
    ),
    Mutation(
        "kernel-no-sigmoid",
        "kernels/routing_triton.py",
        "weights = tl.exp(logits - shift) / ((1.0 + tl.exp(-logits)) * total)",
        "weights = tl.exp(logits - shift) / total",
        (KERNELS,),
        "Triton soft routing drops the sigmoid factor",
    ),
    Mutation(
        "kernel-fusion-no-relu",
        "kernels/fusion_triton.py",
        "act = tl.maximum(tl.reduce(normed * u[None, :], 1, ADD), 0.0) * weight",
        "act = tl.reduce(normed * u[None, :], 1, ADD) * weight",
        (KERNELS,),
        "Triton fusion without the ReLU",
    ),
    # --- input features ----------------------------------------------------------------------
    Mutation(
        "text-only-routable",
        "hf_liveedit/modules/liveedit.py",
        "routable = has_image if not self.edit_text_only_inputs else torch.ones_like(has_image)",
        "routable = torch.ones_like(has_image)",
        (WIRING,),
        "text-only inputs are routable even without `edit_text_only_inputs`",
    ),
    Mutation(
        "text-only-no-sentinel-stand-in",
        "hf_liveedit/modules/liveedit.py",
        "phi = torch.where(has_image[:, None, None], phi, phi_sentinel)",
        "phi = phi",
        (WIRING,),
        "the sentinel no longer stands in for a text-only input's image tokens",
    ),
    # --- model: adapter switch, Hub, metadata ----------------------------------------------
    Mutation(
        "disable-adapter-no-finally",
        "hf_liveedit/layer.py",
        "        token = self._enabled.set(False)\n        try:\n            yield\n        finally:\n"
        "            self._enabled.reset(token)",
        "        token = self._enabled.set(False)\n        yield\n        self._enabled.reset(token)",
        (WIRING,),
        "`disable_adapter` without try/finally (an exception leaves the edits off)",
    ),
    Mutation(
        "hub-drops-revision-and-token",
        "hf_liveedit/model.py",
        "str(model_id),\n            revision=revision,\n            token=token,\n",
        "str(model_id),\n",
        (HUB,),
        "`from_pretrained` does not pass `revision`/`token` to the Hub download",
    ),
    Mutation(
        "image-sha-without-size",
        "hf_liveedit/images.py",
        'digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())',
        "digest = hashlib.sha256()",
        ("tests/test_model.py::test_edit_metadata",),
        "the edit image's SHA-256 leaves out its size",
    ),
    # --- persistence ------------------------------------------------------------------------
    Mutation(
        "save-straight-into-target",
        "hf_liveedit/model.py",
        "with atomic_directory(save_directory, drop=drop) as staging:\n"
        "            self.liveedit_config.save_pretrained(",
        "with contextlib.nullcontext(Path(save_directory)) as staging:\n"
        "            self.liveedit_config.save_pretrained(",
        (SAVING,),
        "`save_pretrained` writes straight into the target folder",
    ),
    Mutation(
        "save-commits-on-exception",
        "hf_liveedit/persistence.py",
        "        yield staging\n",
        "        with contextlib.suppress(BaseException):\n            yield staging\n",
        (SAVING,),
        "an exception during the save is swallowed and the partial folder committed",
    ),
    Mutation(
        "save-drops-other-files",
        "hf_liveedit/persistence.py",
        "if os.path.lexists(destination) or entry.name in drop:",
        "if True:",
        (SAVING,),
        "files already in the target folder are not carried over",
    ),
    Mutation(
        "save-leaves-staging-behind",
        "hf_liveedit/persistence.py",
        "        _IN_FLIGHT.discard(str(staging))\n        shutil.rmtree(staging, ignore_errors=True)",
        "        _IN_FLIGHT.discard(str(staging))",
        (SAVING,),
        "a failed save leaves its temporary folder behind",
    ),
    Mutation(
        "save-no-undo",
        "hf_liveedit/persistence.py",
        "                os.replace(retired, real)  # undo: the previous folder is back, whole",
        "                pass",
        (SAVING,),
        "a failed final rename does not put the previous folder back",
    ),
    Mutation(
        "generator-hash-not-verified",
        "hf_liveedit/persistence.py",
        "    if recorded is not None and found != recorded:",
        "    if False:",
        (INTEGRITY,),
        "a generator file that does not hash to its recorded SHA-256 loads",
    ),
    Mutation(
        "verify-never-refines",
        "hf_liveedit/verification.py",
        "            if done.all() or step == max_steps:",
        "            if True:",
        (VERIFY,),
        "verified edits check the answer but never refine the expert",
    ),
    Mutation(
        "verify-ignores-min-probability",
        "hf_liveedit/verification.py",
        "            done = took & likely",
        "            done = took",
        (VERIFY,),
        "refinement stops at the greedy answer whatever refine_min_probability asks",
    ),
    Mutation(
        "verify-refines-routing-features",
        "hf_liveedit/verification.py",
        "    refined = ExpertBatch(up.detach().to(dtype), down.detach().to(dtype), new.phi, new.psi)",
        "    refined = ExpertBatch(up.detach().to(dtype), down.detach().to(dtype), new.psi, new.phi)",
        (VERIFY,),
        "refinement hands back other routing features than the generator's",
    ),
    Mutation(
        "add-edits-stores-nothing",
        "hf_liveedit/model.py",
        "        if made:  # one addition: all edits are stored, or none",
        "        if False:",
        ("tests/test_model.py",),
        "add_edits stores nothing at all",
    ),
    Mutation(
        "fingerprint-check-skipped",
        "hf_liveedit/persistence.py",
        "    if differences:\n",
        "    if False:\n",
        (SAVING,),
        "loading never compares the base-model fingerprint",
    ),
    Mutation(
        "generator-sha-check-skipped",
        "hf_liveedit/model.py",
        'if not allow_generator_mismatch and meta["generator_sha256"] != self.generator_sha256():',
        "if False:",
        (SAVING,),
        "`load_experts` accepts experts made by another generator",
    ),
    # --- training losses and their wiring ------------------------------------------------------
    Mutation(
        "hr-loc-positive-column-0",
        "trainers/model.py",
        "sentinel = torch.full_like(loc_rows, len(pair_edit))",
        "sentinel = torch.zeros_like(loc_rows)",
        (WIRING,),
        "`l_hr` for locality inputs pulls towards expert 0 instead of the sentinel",
    ),
    Mutation(
        "hr-edit-positive-sentinel",
        "trainers/model.py",
        'terms["hr_edit"] = info_nce(scores, own).mean()',
        'terms["hr_edit"] = info_nce(scores, torch.full_like(own, len(pair_edit))).mean()',
        (WIRING,),
        "`l_hr` for generality inputs pulls towards the sentinel instead of the own edit",
    ),
    Mutation(
        "sr1-negative-is-own-expert",
        "trainers/model.py",
        "negative = similarity(psi_in, psi_edit[negative_record]).diagonal()",
        "negative = similarity(psi_in, psi_edit).diagonal()",
        (WIRING,),
        "`l_sr1`'s negative is the sample's own expert",
    ),
    Mutation(
        "sr2-without-locality-candidates",
        "trainers/model.py",
        "candidates = torch.cat([psi_edit, experts.psi[loc_rows]])",
        "candidates = psi_edit",
        (WIRING,),
        "`l_sr2` leaves the locality samples out of its candidates",
    ),
    Mutation(
        "total-loss-drops-locality",
        "trainers/trainer.py",
        "loss = sum(weights[term] * value for term, value in terms.items())",
        "loss = sum(\n"
        "            weights[term] * value for term, value in terms.items() if 'loc' not in term\n"
        "        )",
        (WIRING,),
        "the trainer's total loss leaves out `l_loc`",
    ),
    Mutation(
        "loss-kl-direction",
        "trainers/losses.py",
        "token_kl = (reference.exp() * (reference - edited)).sum(dim=-1)",
        "token_kl = (edited.exp() * (edited - reference)).sum(dim=-1)",
        (LOSSES,),
        "`l_loc` is KL(edited || frozen) instead of KL(frozen || edited)",
    ),
    Mutation(
        "loss-sr1-negative-sign",
        "trainers/losses.py",
        "loss = loss - F.logsigmoid(-negative.float())",
        "loss = loss - F.logsigmoid(negative.float())",
        (LOSSES,),
        "`l_sr1` pulls the negative up instead of down",
    ),
    Mutation(
        "loss-mean-over-padding",
        "trainers/losses.py",
        "return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)",
        "return (values * mask).sum(dim=1) / values.shape[1]",
        (LOSSES,),
        "answer losses average over padding positions too",
    ),
    Mutation(
        "loss-first-sentinel-for-all",
        "trainers/losses.py",
        "own_sentinel = similarity(phi_in, phi_sentinel).diagonal()",
        "own_sentinel = similarity(phi_in, phi_sentinel)[:, 0]",
        (LOSSES,),
        "`l_hr` compares every input with the first input's sentinel",
    ),
    # --- metrics ------------------------------------------------------------------------------
    Mutation(
        "metric-prediction-not-shifted",
        "hf_liveedit/evaluation/metrics.py",
        "predicted = logits[:, :-1].argmax(dim=-1)",
        "predicted = logits[:, 1:].argmax(dim=-1)",
        (METRICS,),
        "predictions read at the answer position instead of the one before",
    ),
    Mutation(
        "metric-sequence-match",
        "hf_liveedit/evaluation/metrics.py",
        "scores.append(sum(p == r for p, r in zip(predicted, reference)) / len(reference))",
        "scores.append(float(list(predicted) == list(reference)))",
        (METRICS,),
        "token accuracy replaced by whole-answer match",
    ),
    Mutation(
        "metric-exact-match-unnormalised",
        "hf_liveedit/evaluation/metrics.py",
        "return float(normalize_answer(generated) == expected)",
        "return float(generated == target)",
        (METRICS,),
        "exact match without case/space/punctuation normalisation",
    ),
    Mutation(
        "metric-std-population",
        "hf_liveedit/evaluation/metrics.py",
        "/ (len(values) - 1))",
        "/ len(values))",
        (METRICS,),
        "spread over chunks with ddof 0 instead of 1",
    ),
    Mutation(
        "metric-answer-window-short",
        "hf_liveedit/evaluation/metrics.py",
        "return int((labels != IGNORE_INDEX).sum(dim=1).max()) + 1",
        "return int((labels != IGNORE_INDEX).sum(dim=1).max())",
        (METRICS,),
        "the answer window misses the first answer token's prediction",
    ),
    # --- benchmark predictions and the demo -----------------------------------------------------
    Mutation(
        "preds-wrong-image",
        "hf_liveedit/data/benchmark/preds.py",
        '[(r["image"], r["src"]) for r in todo]',
        '[(r["m_loc"], r["src"]) for r in todo]',
        (HUB,),
        "`pred` answers the edit question about the locality image",
    ),
    Mutation(
        "preds-loc-scored-on-m-loc",
        "hf_liveedit/data/benchmark/preds.py",
        '"loc": _rates([(p, a) for p, (_, a) in zip(loc_answers, loc)]),',
        '"loc": _rates([(p, a) for p, (_, _, a) in zip(m_loc_answers, m_loc)]),',
        (HUB,),
        "base accuracy scores the image-locality answers as text locality",
    ),
    Mutation(
        "image-key-threshold-ignored",
        "hf_liveedit/modules/liveedit.py",
        "return InputFeatures(phi, psi, self.image_key_threshold * phi, routable)",
        "return InputFeatures(phi, psi, 0.0 * phi, routable)",
        (IMAGE_KEY,),
        "the image-key filter compares with 0 instead of the threshold (keeps any positive cosine)",
    ),
    Mutation(
        "image-key-not-centred",
        "hf_liveedit/modules/image_key.py",
        "pooled = pool_image_tokens(hidden, image, self.positions) - self.center.float()",
        "pooled = pool_image_tokens(hidden, image, self.positions)",
        (IMAGE_KEY,),
        "the image key ignores the fitted centre",
    ),
    Mutation(
        "image-key-pool-drops-last-token",
        "hf_liveedit/modules/image_key.py",
        "& (rank[:, None, :] < end[..., None])",
        "& (rank[:, None, :] < end[..., None] - 1)",
        (IMAGE_KEY,),
        "pooling segments leave out their last image token",
    ),
    Mutation(
        "image-key-threshold-rate-loose",
        "trainers/routing_stage.py",
        "if all(r[i] <= max_rate for r in rates.values())",
        "if all(r[i] <= max_rate + 0.5 for r in rates.values())",
        (IMAGE_KEY,),
        "the threshold sweep accepts false-keep rates above the limit",
    ),
    Mutation(
        "image-key-stage-no-reject",
        "trainers/routing_stage.py",
        "reject.append(F.softplus(scores[others]))",
        "reject.append(0.0 * F.softplus(scores[others]))",
        ("tests/test_routing_stage.py",),
        "the image-key stage does not teach the soft score to refuse other kept edits",
    ),
    Mutation(
        "verify-moves-image-keys",
        "hf_liveedit/model.py",
        'config.refine_routing_margin if config.hard_routing == "sentinel" else None,',
        "config.refine_routing_margin,",
        (VERIFY,),
        "verified edits move image keys along their input (scaling them past every other)",
    ),
    Mutation(
        "demo-tiny-no-edit",
        "hf_liveedit/commands/demo.py",
        "        liveedit.add_edit(image, prompt, target)\n        after =",
        "        after =",
        (HUB,),
        "`demo --backbone tiny` prints answers without applying the edit",
    ),
)


# --- the temporary copy ----------------------------------------------------------------------------


def make_copy(workdir: Path) -> Path:
    """Copy the repository (no venv, git or caches) to ``workdir/<name>``; link namespaced folders."""
    copy = workdir / ROOT.name
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    for folder, inside in NAMESPACED.items():
        link = copy / inside
        if link.exists() or link.is_symlink():
            raise RuntimeError(f"{link} already exists in the copy")
        link.symlink_to(Path("..") / folder, target_is_directory=True)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # tests that read ../shared (as on the development machines)
        (workdir / "shared").symlink_to(shared, target_is_directory=True)
    return copy


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("TRITON_INTERPRET", None)  # the kernel tests' fixture sets it themselves
    return env


def check_imports(python: str, copy: Path) -> None:
    """Fail unless the packages the tests import are the copy's files."""
    modules = [
        "hf_liveedit",
        "hf_liveedit.routing",
        "hf_liveedit.kernels",
        "hf_liveedit.kernels.routing_triton",
        "hf_liveedit.trainers",
        "hf_liveedit.trainers.model",
    ]
    code = "import importlib\n" + "".join(
        f"print(importlib.import_module({name!r}).__file__)\n" for name in modules
    )
    result = subprocess.run(
        [python, "-c", code], cwd=copy, env=environment(copy), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing the copy failed:\n{result.stderr}")
    files = [Path(line).resolve() for line in result.stdout.split()]
    outside = [str(f) for f in files if not f.is_relative_to(copy.resolve())]
    if len(files) != len(modules) or outside:
        raise RuntimeError(
            "the tests would not import the copy's code (editable install?): " + ", ".join(outside)
        )


def check_list(mutations: tuple[Mutation, ...]) -> None:
    """Every original text must occur exactly once: stop loudly if the list has rotted."""
    problems = []
    names = [m.name for m in mutations]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"duplicate mutation name {name!r}")
    for mutation in mutations:
        path = ROOT / mutation.file
        if not path.is_file():
            problems.append(f"{mutation.name}: {mutation.file} does not exist")
            continue
        count = path.read_text().count(mutation.original)
        if count != 1:
            problems.append(
                f"{mutation.name}: original text found {count} times in {mutation.file} "
                f"(must be exactly once):\n    {mutation.original!r}"
            )
        for test in mutation.tests:
            if not (ROOT / test.split("::")[0]).is_file():
                problems.append(f"{mutation.name}: test file {test} does not exist")
    if problems:
        raise SystemExit("mutation list is out of date:\n  " + "\n  ".join(problems))


# --- running ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutation: Mutation | None
    status: str  # "caught", "survived", "error", "timeout"
    by: str
    seconds: float
    output: str


def _stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP), e.g. paused while a heavy job has the machine."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def run_pytest(python: str, copy: Path, tests: tuple[str, ...], timeout: float) -> Outcome:
    """Run pytest on ``tests`` in ``copy``; ``timeout`` counts only time while it can run.

    Time while pytest (or this command) is stopped by a signal does not count, so pausing the
    check while something else needs the machine does not turn into timeouts.
    """
    command = [python, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", "-rfE"]
    command += ["--no-header", "-o", "addopts=", *tests]
    poll = 0.5
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        process = subprocess.Popen(
            command, cwd=copy, env=environment(copy), stdout=log, stderr=subprocess.STDOUT
        )
        active, last, timed_out = 0.0, time.monotonic(), False
        while process.poll() is None:
            time.sleep(poll)
            now = time.monotonic()
            if not _stopped(process.pid):
                active += min(now - last, 2 * poll)  # a long gap: this command was stopped
            last = now
            if active > timeout:
                process.kill()
                process.wait()
                timed_out = True
        log.seek(0)
        output = log.read()
    if timed_out:
        return Outcome(None, "timeout", f"(timeout after {timeout:.0f} s)", active, output)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    if process.returncode == 0:
        return Outcome(None, "survived", "", active, output)
    if process.returncode == 1 and failed:
        return Outcome(None, "caught", failed[0], active, output)
    by = failed[0] if failed else f"(pytest exit {process.returncode})"
    return Outcome(None, "error", by, active, output)


def run_mutation(python: str, copy: Path, mutation: Mutation, timeout: float) -> Outcome:
    path = copy / mutation.file
    original = path.read_text()
    if original.count(mutation.original) != 1:
        raise RuntimeError(f"{mutation.name}: original text not found once in the copy")
    path.write_text(original.replace(mutation.original, mutation.replacement))
    try:
        outcome = run_pytest(python, copy, mutation.tests, timeout)
    finally:
        path.write_text(original)
    outcome.mutation = mutation
    return outcome


def markdown_table(outcomes: list[Outcome]) -> str:
    lines = [
        "| mutation | file | caught | by test |",
        "|---|---|---|---|",
    ]
    for outcome in outcomes:
        mutation = outcome.mutation
        caught = {"caught": "yes", "survived": "**no**", "timeout": "yes (timeout)"}.get(
            outcome.status, "yes (error)"
        )
        by = outcome.by.replace("|", "\\|")
        lines.append(
            f"| `{mutation.name}`: {mutation.description} | `{mutation.file}` | {caught} | "
            f"{f'`{by}`' if by else '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation "
                        "(repeatable)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="mutations run in parallel (default 1)")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not first check that the unmutated copy passes the tests")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds per pytest run, not counting time while stopped")  # fmt: skip
    parser.add_argument("--python", default=None, help="interpreter (default: the repo's .venv)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--verbose", action="store_true", help="print pytest's output")
    args = parser.parse_args(argv)

    check_list(MUTATIONS)
    mutations = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            raise SystemExit(f"unknown mutation(s): {', '.join(unknown)}")
        mutations = tuple(m for m in MUTATIONS if m.name in args.only)
    if args.list:
        for m in mutations:
            print(f"{m.name:<34} {m.file:<36} {', '.join(m.tests)}\n    {m.description}")
        return 0
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = args.python or (str(venv_python) if venv_python.exists() else sys.executable)
    jobs = max(1, min(args.jobs, len(mutations)))

    workdir = Path(tempfile.mkdtemp(prefix="hf-liveedit-mutation-"))
    try:
        copies: queue.Queue[Path] = queue.Queue()
        for index in range(jobs):
            copy = make_copy(workdir / f"copy-{index}")
            check_imports(python, copy)
            copies.put(copy)
        print(f"{len(mutations)} mutation(s), {jobs} job(s), copies in {workdir}", flush=True)

        if not args.skip_baseline:
            tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
            copy = copies.get()
            baseline = run_pytest(python, copy, tests, args.timeout * 2)
            copies.put(copy)
            print(f"baseline (no mutation): {baseline.status} in {baseline.seconds:.0f} s",
                  flush=True)  # fmt: skip
            if baseline.status != "survived":  # "survived" = every test passed
                print(baseline.output[-6000:])
                print("the unmutated code fails the listed tests: fix that first", file=sys.stderr)
                return 2

        def work(mutation: Mutation) -> Outcome:
            copy = copies.get()
            try:
                outcome = run_mutation(python, copy, mutation, args.timeout)
            finally:
                copies.put(copy)
            verdict = {"caught": "caught", "survived": "SURVIVED"}.get(outcome.status,
                                                                       outcome.status)  # fmt: skip
            print(f"  {mutation.name:<34} {verdict:<9} {outcome.seconds:5.0f} s  {outcome.by}",
                  flush=True)  # fmt: skip
            if args.verbose or outcome.status == "error":
                print(outcome.output[-4000:], flush=True)
            return outcome

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(work, mutations))
    finally:
        if args.keep:
            print(f"copies kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(markdown_table(outcomes))
    survived = [o.mutation.name for o in outcomes if o.status == "survived"]
    caught = len(outcomes) - len(survived)
    print(f"\n{caught}/{len(outcomes)} mutations caught")
    if survived:
        print("survived: " + ", ".join(survived), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
